"""Bad Teacher (Chundawat et al., DU): distil a competent teacher on D_r and an incompetent one on D_f.

DU `munl/unlearning/bad_teacher.py` (`UnlearnerLoss`, `unlearning_step`, `blindspot_unlearner`): the
target of a sample is softmax(incompetent / tau) if it is a forget sample, else softmax(f_D / tau);
the loss is `F.kl_div(log_softmax(student / tau), target)` with kl_div's default reduction, the mean over
batch x classes (written here as the sum over the elements divided by their number, which is the same
and spares torch's warning about that reduction).

The competent teacher is f_D; the incompetent one is a randomly initialised network of the same
architecture (seeded by cfg.seed), never trained. Both are frozen, so their logits are computed once.
On shuffled D_r + D_f each sample's target is softmax(incompetent / tau) if it is in D_f, else
softmax(f_D / tau); the student (a copy of f_D) minimises KL(target || softmax(student / tau)).
Sources (BASELINES.md): Adam lr 0.01, tau 1, 10 epochs; tau searched in [0, 5]. Reads no label.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mixunlearn.models import build_model

from .common import Method

INCOMPETENT_SEED_OFFSET = 2   # the incompetent teacher's weights: cfg.seed + 2


@dataclass
class BadTeacherHyper:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.01                          # Adam
    tau: float = 1.0                          # distillation temperature


class BadTeacher(Method):
    name = "bad_teacher"
    title = "Bad Teacher"
    Hyper = BadTeacherHyper
    reads_labels = ()
    cnn_defaults = {"epochs": 5, "batch_size": 64, "lr": 1e-4}

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        self.model = self.trainable_copy(original)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.hyper.lr)
        with self.seeded(INCOMPETENT_SEED_OFFSET):
            self.incompetent = build_model(cfg.model, num_classes=data.num_classes, in_channels=data.in_channels,
                                           image_size=data.image_size)
        self.incompetent = self.incompetent.to(self.device, memory_format=self.memory_format).eval()
        self.incompetent.requires_grad_(False)
        everyone = torch.arange(len(split.train_labels), device=self.device)
        self.teacher_logits = self.frozen_logits(original, everyone)
        self.teacher_logits[self.forget_idx] = self.frozen_logits(self.incompetent, self.forget_idx)

    def run_epoch(self) -> None:
        h = self.hyper
        for idx in self.batches(torch.cat([self.retain_idx, self.forget_idx]), h.batch_size):
            target = F.softmax(self.teacher_logits[idx] / h.tau, dim=1)
            student = F.log_softmax(self.logits(self.model, idx) / h.tau, dim=1)
            self.step(self.optimizer, F.kl_div(student, target, reduction="sum") / target.numel())
