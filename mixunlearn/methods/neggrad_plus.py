"""NegGrad+ (Kurmanji et al., in the SCRUB notebook and DU): L = alpha * CE_r - (1 - alpha) * CE_f.

Each epoch iterates over D_r batches zipped with D_f batches, D_f cycled (reshuffled at each pass).
Sources (BASELINES.md): alpha 0.95, lr 0.01, 10 epochs; alpha is searched in [0, 1].
"""
from __future__ import annotations

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
    weight_decay: float = SGD_WEIGHT_DECAY
    alpha: float = 0.95                       # weight of the retain CE; 1 - alpha on the forget CE


class NegGradPlus(Method):
    name = "neggrad_plus"
    title = "NegGrad+"
    Hyper = NegGradPlusHyper
    reads_labels = ("retain", "forget")
    cnn_defaults = {"epochs": 5, "batch_size": 64, "lr": 5e-4}

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        self.model, self.optimizer = self.copy_with_sgd(original)

    def run_epoch(self) -> None:
        h = self.hyper
        retain = self.batches(self.retain_idx, h.batch_size)
        forget: list[torch.Tensor] = []
        for r in retain:
            if not forget:
                forget = self.batches(self.forget_idx, h.batch_size)
            f = forget.pop(0)
            logits = self.logits(self.model, torch.cat([r, f]))
            loss = (h.alpha * F.cross_entropy(logits[:len(r)], self.labels[r])
                    - (1 - h.alpha) * F.cross_entropy(logits[len(r):], self.labels[f]))
            self.step(self.optimizer, loss)
