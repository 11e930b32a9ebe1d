"""l1-sparse (SU): cross-entropy on D_r plus alpha_t * ||theta||_1, alpha_t = alpha * (1 - epoch / E).

SU `Classification/unlearn/FT.py` (`FT_l1` -> `FT_iter(with_l1=True)`): `l1_regularization(model)` =
the l1 norm of all parameters, weighted by `args.alpha * (1 - epoch / (unlearn_epochs - no_l1_epochs))`
(no_l1_epochs 0), model in train mode, `impl.py`'s SGD(unlearn_lr, momentum 0.9, weight decay 5e-4).
The penalty decays linearly to 0 over the epochs (epoch counted from 0, as SU). Sources (BASELINES.md):
SU's argument default alpha = 0.2 (its README leaves alpha, lr and epochs as placeholders); searched
log-uniform in [1e-5, 1]. lr and epochs are the common SU values (0.01, 10).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .common import SGD_MOMENTUM, SGD_WEIGHT_DECAY, Method


@dataclass
class L1SparseHyper:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.01                          # SGD
    momentum: float = SGD_MOMENTUM
    weight_decay: float = SGD_WEIGHT_DECAY
    alpha: float = 0.2                        # SU's default; per-step weight of the summed |theta|


class L1Sparse(Method):
    name = "l1_sparse"
    title = "ℓ1-sparse"
    Hyper = L1SparseHyper
    reads_labels = ("retain",)
    cnn_defaults = {"epochs": 5, "batch_size": 64, "lr": 0.01, "alpha": 5e-3}

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        self.model, self.optimizer = self.copy_with_sgd(original)

    def run_epoch(self) -> None:
        h = self.hyper
        alpha_t = h.alpha * (1 - self.epoch / h.epochs)
        for idx in self.batches(self.retain_idx, h.batch_size):
            l1 = torch.stack([p.abs().sum() for p in self.model.parameters()]).sum()
            loss = F.cross_entropy(self.logits(self.model, idx), self.labels[idx]) + alpha_t * l1
            self.step(self.optimizer, loss)
