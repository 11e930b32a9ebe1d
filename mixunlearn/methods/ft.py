"""FT, fine-tuning: cross-entropy on D_r only; forgetting comes from catastrophic forgetting.

DU `munl/unlearning/finetune.py` (`FinetuneUnlearner.unlearn`) with `train_one_epoch` in
`munl/unlearning/common.py`: model in train mode, SGD (lr, momentum 0.9, weight decay 5e-4: DU's
`default_optimizer`), CE on D_r, `CosineAnnealingLR(T_max=num_epochs)` stepped once per epoch, which is
lr_e = lr (1 + cos(pi e / E)) / 2 for 0-based epoch e (the default here, schedule = "cosine").
SU `Classification/unlearn/FT.py` (`FT` -> `FT_iter`), under `impl.py`'s `_iterative_unlearn_impl`: the
same step, SGD(unlearn_lr, momentum 0.9, weight decay 5e-4), `MultiStepLR` at `--decreasing_lr` 91,136,
which no unlearning run of 10 epochs reaches: a constant LR (schedule = "constant").
Sources (BASELINES.md): DU lr 0.1, 5 epochs, batch 256; SU lr 0.01, 10 epochs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F

from .common import SGD_MOMENTUM, SGD_WEIGHT_DECAY, Method


@dataclass
class FTHyper:
    choices: ClassVar[dict[str, tuple[str, ...]]] = {"schedule": ("cosine", "constant")}
    epochs: int = 5                           # DU
    batch_size: int = 256                     # DU / SU common setting
    lr: float = 0.1                           # SGD, DU
    momentum: float = SGD_MOMENTUM
    weight_decay: float = SGD_WEIGHT_DECAY
    schedule: str = "cosine"                  # [choice] "cosine" (DU) or "constant" (SU)


class FT(Method):
    name = "ft"
    title = "FT"
    Hyper = FTHyper
    reads_labels = ("retain",)
    cnn_defaults = {"epochs": 5, "batch_size": 64, "lr": 0.05}

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        h = self.hyper
        assert h.schedule in ("cosine", "constant"), f"ft schedule {h.schedule!r}: use cosine or constant"
        self.model, self.optimizer = self.copy_with_sgd(original)

    def run_epoch(self) -> None:
        h = self.hyper
        if h.schedule == "cosine":   # per epoch, as CosineAnnealingLR(T_max = epochs) stepped each epoch
            self.set_lr(self.optimizer, 0.5 * h.lr * (1 + math.cos(math.pi * self.epoch / h.epochs)))
        for idx in self.batches(self.retain_idx, h.batch_size):
            self.step(self.optimizer, F.cross_entropy(self.logits(self.model, idx), self.labels[idx]))
