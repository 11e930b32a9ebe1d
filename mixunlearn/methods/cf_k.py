"""CF-k and EU-k (Goel et al., DU): retrain only the last k stages and the head on D_r.

CF-k ("catastrophically forget") fine-tunes them from f_D's weights; EU-k ("exact unlearning") first
re-initialises them. They differ only by that re-initialisation, so both live here. Both minimise
CE on D_r + (lambda / 2) * ||theta - theta0||^2 over the trainable weights, theta0 = f_D's weights.
Stages (common.stages): ResNet-18 layer4, layer3, ... then the classifier; cnn_small its conv and
linear layers, the last linear being the head. The frozen stages stay in eval mode, so their batch-norm
statistics stay f_D's too.
Sources (BASELINES.md): k 1, lr 0.01, lambda 0.1, 10 epochs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .common import SGD_MOMENTUM, SGD_WEIGHT_DECAY, Method, stages

REINIT_SEED_OFFSET = 1   # EU-k's fresh stages: cfg.seed + 1, apart from the run's other draws


@dataclass
class CFkHyper:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.01                          # SGD
    momentum: float = SGD_MOMENTUM
    weight_decay: float = SGD_WEIGHT_DECAY
    k: int = 1                                # stages trained besides the head
    lam: float = 0.1                          # lambda of the proximal term (lambda / 2) ||theta - theta0||^2


class CFk(Method):
    name = "cf_k"
    title = "CF-k"
    Hyper = CFkHyper
    reads_labels = ("retain",)
    cnn_defaults = {"epochs": 5, "batch_size": 64, "lr": 0.02, "k": 2}
    reinitialise = False

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        h = self.hyper
        self.model = self.trainable_copy(original)
        all_stages = stages(self.model)
        assert 0 <= h.k < len(all_stages), f"{self.name} k = {h.k}: the model has {len(all_stages) - 1} stages"
        self.trained = all_stages[len(all_stages) - 1 - h.k:]
        trained_params = {id(p) for m in self.trained for p in m.parameters()}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in trained_params)
        if self.reinitialise:
            with self.seeded(REINIT_SEED_OFFSET):
                for stage in self.trained:
                    for m in stage.modules():
                        if hasattr(m, "reset_parameters"):
                            m.reset_parameters()
                        if hasattr(m, "reset_running_stats"):
                            m.reset_running_stats()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        original_of = dict(zip((id(p) for p in self.model.parameters()), original.parameters()))
        self.theta0 = [original_of[id(p)].detach().to(self.device) for p in self.params]
        self.optimizer = self.sgd(self.params, lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)

    def run_epoch(self) -> None:
        h = self.hyper
        self.model.eval()
        for stage in self.trained:
            stage.train()
        for idx in self.batches(self.retain_idx, h.batch_size):
            proximal = torch.stack([(p - p0).pow(2).sum() for p, p0 in zip(self.params, self.theta0)]).sum()
            loss = F.cross_entropy(self.logits(self.model, idx), self.labels[idx]) + 0.5 * h.lam * proximal
            self.step(self.optimizer, loss)
        self.model.train()


class EUk(CFk):
    name = "eu_k"
    title = "EU-k"
    reinitialise = True
    cnn_defaults = {"epochs": 10, "batch_size": 64, "lr": 0.03}
