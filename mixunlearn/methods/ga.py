"""GA, gradient ascent (NegGrad): maximise the cross-entropy on D_f only, i.e. minimise -CE(f(x_f), y_f).

SU `Classification/unlearn/GA.py` (`GA`: model in train mode, `loss = -criterion(output_clean, target)`
over the forget loader), under `impl.py`'s SGD(unlearn_lr, momentum 0.9, weight decay 5e-4); DU
`munl/unlearning/gradient_ascent.py` is the same step.
Sources (BASELINES.md): lr 0.01, 10 epochs (DU and SU). It diverges easily: a NaN or Inf epoch loss
raises common.Diverged naming the epoch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .common import SGD_MOMENTUM, SGD_WEIGHT_DECAY, Method


@dataclass
class GAHyper:
    epochs: int = 10                          # DU, SU
    batch_size: int = 256
    lr: float = 0.01                          # SGD, DU, SU
    momentum: float = SGD_MOMENTUM
    weight_decay: float = SGD_WEIGHT_DECAY


class GA(Method):
    name = "ga"
    title = "GA"
    Hyper = GAHyper
    reads_labels = ("forget",)
    cnn_defaults = {"epochs": 5, "batch_size": 64, "lr": 3e-4}

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        self.model, self.optimizer = self.copy_with_sgd(original)

    def run_epoch(self) -> None:
        for idx in self.batches(self.forget_idx, self.hyper.batch_size):
            self.step(self.optimizer, -F.cross_entropy(self.logits(self.model, idx), self.labels[idx]))
