"""CF-k and EU-k (Goel et al.), as DU runs them: retrain only the last k stages and the head on D_r.

DU `munl/unlearning/catastrophic_forgetting_k.py` and `exact_unlearning_k.py`, both calling
`fk_finetune` and `run_train_epoch` in `munl/unlearning/scrub_utils.py` (from SC's notebooks):
- freeze everything, then free the last k stages and the classifier (`select_last_k_blocks` +
  `get_model_classifier`); EU-k ("exact unlearning") first re-initialises them (`reinialize_modules`,
  DU's `init_weights`: convs kaiming-uniform fan_out / relu with zero bias, batch-norm weight 1 and bias 0
  (its running statistics stay f_D's), linears xavier-uniform with zero bias); CF-k ("catastrophically
  forget") fine-tunes them from f_D's weights;
- theta_0 = a copy of the model taken after that (`model_init = copy.deepcopy(model)`): f_D's weights
  for CF-k, the fresh initialisation for EU-k; minimise CE on D_r + (lam / 2) ||theta - theta_0||^2 over
  the trainable weights (`l2_penalty`, weighted by DU's sgda_weight_decay);
- the whole model in eval mode (`run_train_epoch` calls `model.eval()`): batch-norm keeps f_D's statistics;
- SGD without momentum or weight decay (`torch.optim.SGD(model.parameters(), lr=lr, weight_decay=0.0)`);
  LR x lr_decay per milestone passed, milestones int(0.5 E), int(0.8 E), int(0.9 E), epochs counted from 0
  (`sgda_adjust_learning_rate(epoch, ...)`: steps = #(epoch > milestone)).
Stages (common.stages): ResNet-18 layer4, layer3, ... then the classifier; cnn_small its conv and linear
layers, the last linear being the head.
Sources: DU's defaults: k (num_blocks) 1, lr 0.01, lam (sgda_weight_decay) 0.1, lr_decay (sgda_decay_rate)
0.1, 10 epochs, batch 256. DU searches lam, lr_decay, lr, k, epochs and the batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import Method, stages

REINIT_SEED_OFFSET = 1   # EU-k's fresh stages: cfg.seed + 1, apart from the run's other draws


@dataclass
class CFkHyper:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.01                          # plain SGD: DU's fk_finetune has no momentum or weight decay
    k: int = 1                                # stages trained besides the head
    lam: float = 0.1                          # lambda of the proximal term (lambda / 2) ||theta - theta0||^2
    lr_decay: float = 0.1                     # LR factor per milestone passed (DU's sgda_decay_rate; 1 = constant)


def du_init_weights(module: nn.Module) -> None:
    """DU's `munl.models.init_weights`, applied to every submodule of a re-initialised stage."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_uniform_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.constant_(module.bias, 0)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.constant_(module.weight, 1)
        nn.init.constant_(module.bias, 0)
    elif isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.constant_(module.bias, 0)


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
        self.model = self.trainable_copy(original).eval()
        all_stages = stages(self.model)
        assert 0 <= h.k < len(all_stages), f"{self.name} k = {h.k}: the model has {len(all_stages) - 1} stages"
        self.trained = all_stages[len(all_stages) - 1 - h.k:]
        trained_params = {id(p) for m in self.trained for p in m.parameters()}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in trained_params)
        if self.reinitialise:
            with self.seeded(REINIT_SEED_OFFSET), torch.no_grad():
                for stage in self.trained:
                    stage.apply(du_init_weights)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.theta0 = [p.detach().clone() for p in self.params]   # after the re-initialisation (DU's model_init)
        self.optimizer = self.sgd(self.params, lr=h.lr, momentum=0.0, weight_decay=0.0)

    def run_epoch(self) -> None:
        h = self.hyper
        milestones = [math.floor(f * h.epochs) for f in (0.5, 0.8, 0.9)]
        self.set_lr(self.optimizer, h.lr * h.lr_decay ** sum(self.epoch > m for m in milestones))
        self.model.eval()
        for idx in self.batches(self.retain_idx, h.batch_size):
            proximal = torch.stack([(p - p0).pow(2).sum() for p, p0 in zip(self.params, self.theta0)]).sum()
            loss = F.cross_entropy(self.logits(self.model, idx), self.labels[idx]) + 0.5 * h.lam * proximal
            self.step(self.optimizer, loss)


class EUk(CFk):
    name = "eu_k"
    title = "EU-k"
    reinitialise = True
    cnn_defaults = {"epochs": 10, "batch_size": 64, "lr": 0.03}
