"""NegGrad+ (Kurmanji et al.), as SC's and DU's code run it: L = alpha * (CE_r + l2) - (1 - alpha) * CE_f.

SC `MIA_experiments.ipynb` (and `small_scale_unlearning.ipynb`), `run_neggrad_epoch`; DU
`munl/unlearning/neggradplus.py`, `run_neggrad_epoch` and `negative_grad`:
- each epoch iterates over D_r batches zipped with `itertools.cycle` of D_f's batches: D_f is shuffled
  once per epoch and its batches repeat in that order;
- the model stays in eval mode (`model.eval()`): batch-norm uses f_D's running statistics and never
  updates them; the retain and the forget batch get separate forward passes;
- l2 = (l2_init / 2) * ||theta - theta_0||^2, theta_0 = f_D's weights (`l2_penalty(model, model_init,
  weight_decay)`), inside the alpha-weighted retain term. DU's default leaves it at 0.
Sources: DU's NegGradPlus defaults: SGD lr 0.01, momentum 0.9, alpha 0.95, 10 epochs, batch 256; its
optimiser's weight decay defaults to 0 but is searched in DU's common space [1e-5, 1e-1], so the default
here is the common 5e-4; BASELINES.md: alpha searched in [0, 1].
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .common import SGD_MOMENTUM, SGD_WEIGHT_DECAY, Method


@dataclass
class NegGradPlusHyper:
    epochs: int = 10
    batch_size: int = 256                     # both sides
    lr: float = 0.01                          # SGD
    momentum: float = SGD_MOMENTUM
    weight_decay: float = SGD_WEIGHT_DECAY    # the optimiser's; DU's default 0 lies outside DU's searched
                                              # [1e-5, 1e-1], so the common 5e-4 (SU) is trial 1
    alpha: float = 0.95                       # weight of the retain CE; 1 - alpha on the forget CE
    l2_init: float = 0.0                      # SC / DU l2_penalty's weight: pull towards f_D's weights


class NegGradPlus(Method):
    name = "neggrad_plus"
    title = "NegGrad+"
    Hyper = NegGradPlusHyper
    reads_labels = ("retain", "forget")
    cnn_defaults = {"epochs": 5, "batch_size": 64, "lr": 5e-4}

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        self.model, self.optimizer = self.copy_with_sgd(original)
        self.model.eval()
        self.theta0 = [p.detach().clone() for p in self.model.parameters()] if self.hyper.l2_init else []

    def run_epoch(self) -> None:
        h = self.hyper
        self.model.eval()
        retain = self.batches(self.retain_idx, h.batch_size)
        # zip(retain_loader, itertools.cycle(forget_loader)): cycle replays its first pass's batches, in that
        # order, for the rest of the epoch; the next epoch's cycle draws a fresh order.
        forget = self.batches(self.forget_idx, h.batch_size)
        for r, f in zip(retain, itertools.cycle(forget)):
            retain_loss = F.cross_entropy(self.logits(self.model, r), self.labels[r])
            if self.theta0:
                retain_loss = retain_loss + 0.5 * h.l2_init * torch.stack(
                    [(p - p0).pow(2).sum() for p, p0 in zip(self.model.parameters(), self.theta0)]).sum()
            forget_loss = F.cross_entropy(self.logits(self.model, f), self.labels[f])
            self.step(self.optimizer, h.alpha * retain_loss - (1 - h.alpha) * forget_loss)
