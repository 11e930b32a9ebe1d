"""Boundary Shrink (Chen et al., SU): relabel each forget sample to its nearest wrong class, then train.

A frozen f_D makes x_adv = clip(x_f + eps * sign(grad_x CE(f_D(x_f), y_f)), 0, 1), in pixel space
before normalisation, and y_adv = the arg-max of f_D(x_adv) over the classes other than y_f (its nearest
wrong class: where the step does not cross the boundary, the runner-up of f_D(x_adv)). f_D is frozen,
so the labels are computed once. Then minimise CE(f(x_f), y_adv) on D_f only.
Sources (BASELINES.md): eps 0.1, searched in [0.01, 0.3]; BASELINES names no lr or epochs, so the
common SGD values (lr 0.01, 10 epochs) are the default.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .common import SGD_MOMENTUM, SGD_WEIGHT_DECAY, Method


@dataclass
class BoundaryShrinkHyper:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.01                          # SGD
    momentum: float = SGD_MOMENTUM
    weight_decay: float = SGD_WEIGHT_DECAY
    eps: float = 0.1                          # FGSM step, in [0, 1] pixel units


class BoundaryShrink(Method):
    name = "boundary_shrink"
    title = "Boundary Shrink"
    Hyper = BoundaryShrinkHyper
    reads_labels = ("forget",)
    cnn_defaults = {"epochs": 5, "batch_size": 64, "lr": 5e-4}

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        self.model, self.optimizer = self.copy_with_sgd(original)
        self.adversarial_labels = self.labels.clone()
        self.adversarial_labels[self.forget_idx] = torch.cat(
            [self.nearest_wrong_class(idx) for idx in self.forget_idx.split(self.cfg.eval_batch_size)])

    def nearest_wrong_class(self, idx: torch.Tensor) -> torch.Tensor:
        y = self.labels[idx]
        pixels = (self.data.train_images[idx].float() / 255).requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            loss = F.cross_entropy(self.original(self.data.normalize(pixels * 255)).float(), y)
        (grad,) = torch.autograd.grad(loss, pixels)
        x_adv = (pixels + self.hyper.eps * grad.sign()).clamp(0, 1).detach()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            logits = self.original(self.data.normalize(x_adv * 255).contiguous(memory_format=self.memory_format))
        return logits.float().scatter(1, y[:, None], float("-inf")).argmax(1)

    def run_epoch(self) -> None:
        for idx in self.batches(self.forget_idx, self.hyper.batch_size):
            loss = F.cross_entropy(self.logits(self.model, idx), self.adversarial_labels[idx])
            self.step(self.optimizer, loss)

