"""SCRUB (Kurmanji et al., SC; DU "scrubv2"): a student moves away from f_D on D_f and stays close on D_r.

teacher = f_D (frozen; its logits are computed once), student = a copy of f_D. For each epoch e = 1..E:
- if e <= msteps, the max step: one pass over D_f minimising -KL_T(student || teacher);
- then the min step: one pass over D_r minimising gamma * CE + alpha * KL_T.
KL_T = KL(softmax(t / T) || softmax(s / T)) * T^2, summed, divided by the batch size.
LR x 0.1 after each milestone floor(0.5 E), floor(0.8 E), floor(0.9 E) (SC: steps = #milestones < e).
Sources (BASELINES.md, DU's defaults): SGD lr 5e-4, momentum 0.9, wd 5e-4, gamma 1, alpha 0.5,
msteps 3, T 2 (SC's MIA notebook: 4), 5 epochs, batch 32 (retain) / 64 (forget).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .common import SGD_MOMENTUM, SGD_WEIGHT_DECAY, Method


@dataclass
class SCRUBHyper:
    epochs: int = 5
    batch_size: int = 32                      # retain (min step)
    forget_batch_size: int = 64               # forget (max step)
    lr: float = 5e-4                          # SGD
    momentum: float = SGD_MOMENTUM
    weight_decay: float = SGD_WEIGHT_DECAY
    gamma: float = 1.0                        # weight of the min step's CE
    alpha: float = 0.5                        # weight of the min step's KL_T
    msteps: int = 3                           # epochs that take a max step
    T: float = 2.0                            # distillation temperature


def kl_t(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)) * T^2, summed over the batch and divided by its size."""
    return F.kl_div(F.log_softmax(student / T, dim=1), F.softmax(teacher / T, dim=1),
                    reduction="sum") * T * T / student.shape[0]


class SCRUB(Method):
    name = "scrub"
    title = "SCRUB"
    Hyper = SCRUBHyper
    reads_labels = ("retain",)
    cnn_defaults = {"lr": 0.01}
    checkpointed = ("model", "optimizer", "max_steps")

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        self.model, self.optimizer = self.copy_with_sgd(original)
        everyone = torch.arange(len(split.train_labels), device=self.device)
        self.teacher_logits = self.frozen_logits(original, everyone)
        self.max_steps = 0   # max steps taken so far (tests check they stop after msteps epochs)

    def run_epoch(self) -> None:
        h = self.hyper
        e = self.epoch + 1
        milestones = [math.floor(f * h.epochs) for f in (0.5, 0.8, 0.9)]
        self.set_lr(self.optimizer, h.lr * 0.1 ** sum(e > m for m in milestones))
        if e <= h.msteps:
            for idx in self.batches(self.forget_idx, h.forget_batch_size):
                self.step(self.optimizer, -kl_t(self.logits(self.model, idx), self.teacher_logits[idx], h.T))
                self.max_steps += 1
        for idx in self.batches(self.retain_idx, h.batch_size):
            logits = self.logits(self.model, idx)
            loss = (h.gamma * F.cross_entropy(logits, self.labels[idx])
                    + h.alpha * kl_t(logits, self.teacher_logits[idx], h.T))
            self.step(self.optimizer, loss)
