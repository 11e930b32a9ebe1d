"""RL, random labels: cross-entropy on D_f with random labels, together with D_r with its labels.

SU `Classification/unlearn/RL.py` (`RL`), model in train mode, under `impl.py`'s SGD(unlearn_lr,
momentum 0.9, weight decay 5e-4). [choice] mixing (BASELINES.md):
- "sequential" (SU's `cifar10`/`svhn` branch, default): each epoch one pass over D_f with fresh uniform
  random labels (`torch.randint(0, num_classes, ...)`, the true class included), then one pass over D_r;
- "concat" (DU `munl/unlearning/successive_random_labels.py`; SU's `cifar100` branch): one shuffled
  concatenation of D_f and D_r, with a fresh random label per D_f draw.
The random labels are uniform over all classes (as SU draws them) and come from the run's Generator.
Sources: SU lr 0.013, 10 epochs. Labels of D_f are never read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .common import SGD_MOMENTUM, SGD_WEIGHT_DECAY, Method


@dataclass
class RLHyper:
    choices: ClassVar[dict[str, tuple[str, ...]]] = {"mixing": ("sequential", "concat")}
    epochs: int = 10                          # SU
    batch_size: int = 256
    lr: float = 0.013                         # SGD, SU's CIFAR-10 command
    momentum: float = SGD_MOMENTUM
    weight_decay: float = SGD_WEIGHT_DECAY
    mixing: str = "sequential"                # [choice] "sequential" (SU) or "concat" (DU)


class RL(Method):
    name = "rl"
    title = "RL"
    Hyper = RLHyper
    reads_labels = ("retain",)
    cnn_defaults = {"epochs": 5, "batch_size": 64, "lr": 0.013}

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        h = self.hyper
        assert h.mixing in ("sequential", "concat"), f"{self.name} mixing {h.mixing!r}: use sequential or concat"
        self.model, self.optimizer = self.copy_with_sgd(original)

    def run_epoch(self) -> None:
        h = self.hyper
        targets = self.labels.clone()
        random = self.rng.integers(0, self.num_classes, size=len(self.forget_idx))
        targets[self.forget_idx] = torch.as_tensor(random, device=self.device)
        if h.mixing == "sequential":
            order = self.batches(self.forget_idx, h.batch_size) + self.batches(self.retain_idx, h.batch_size)
        else:
            order = self.batches(torch.cat([self.forget_idx, self.retain_idx]), h.batch_size)
        for idx in order:
            self.step(self.optimizer, F.cross_entropy(self.logits(self.model, idx), targets[idx]))
