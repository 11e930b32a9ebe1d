"""Boundary Shrink (Chen et al., CVPR 2023), as SU runs it: relabel each forget sample by FGSM, then train.

SU `Classification/unlearn/boundary_sh.py`, `FGSM_perturb` and `boundary_shrink_iter`:
- a frozen f_D in eval mode makes x_adv = discretize(clip(x_f + eps * sign(grad_x CE(f_D(x_f), y_f)), 0, 1)),
  in pixel space before normalisation (SU's models normalise inside), discretize(x) = round(255 x) / 255;
- y_adv = argmax f_D(x_adv), the plain arg-max (`torch.argmax(test_model(image_adv), dim=1)`): where the
  step does not cross the boundary, y_adv = y_f and that sample is trained towards its own label;
- minimise CE(f(x_f), y_adv) on D_f only, the model in train mode, SGD (SU's common optimiser).
f_D is frozen and in eval mode, so SU's per-batch labels are the same as computing them once here.
[choice] relabel: "argmax" (SU, default) or "nearest_wrong", the arg-max over the classes other than y_f
(the runner-up where FGSM does not cross): a different method, kept to measure the difference.
Sources (BASELINES.md): eps 0.1 (SU: "hard coding in the paper"), searched in [0.01, 0.3]; SU's unlearn
defaults elsewhere: SGD momentum 0.9, weight decay 5e-4; lr and epochs: the common 0.01 and 10.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .common import SGD_MOMENTUM, SGD_WEIGHT_DECAY, Method


@dataclass
class BoundaryShrinkHyper:
    choices: ClassVar[dict[str, tuple[str, ...]]] = {"relabel": ("argmax", "nearest_wrong")}
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.01                          # SGD
    momentum: float = SGD_MOMENTUM
    weight_decay: float = SGD_WEIGHT_DECAY
    eps: float = 0.1                          # FGSM step, in [0, 1] pixel units
    relabel: str = "argmax"                   # [choice] "argmax" (SU) or "nearest_wrong" (never y_f)


class BoundaryShrink(Method):
    name = "boundary_shrink"
    title = "Boundary Shrink"
    Hyper = BoundaryShrinkHyper
    reads_labels = ("forget",)
    cnn_defaults = {"epochs": 5, "batch_size": 64, "lr": 5e-4}

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        assert self.hyper.relabel in ("argmax", "nearest_wrong"), f"boundary_shrink relabel {self.hyper.relabel!r}"
        self.model, self.optimizer = self.copy_with_sgd(original)
        self.adversarial_labels = self.labels.clone()
        self.adversarial_labels[self.forget_idx] = torch.cat(
            [self.adversarial_label(idx) for idx in self.forget_idx.split(self.cfg.eval_batch_size)])

    def adversarial_example(self, idx: torch.Tensor) -> torch.Tensor:
        """SU's FGSM_perturb: pixels in [0, 1], one signed step of eps, clipped, rounded to 1/255 steps."""
        pixels = (self.data.train_images[idx].float() / 255).requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            loss = F.cross_entropy(self.original(self.data.normalize(pixels * 255)).float(), self.labels[idx])
        (grad,) = torch.autograd.grad(loss, pixels)
        return torch.round((pixels + self.hyper.eps * grad.sign()).clamp(0, 1).detach() * 255) / 255

    def adversarial_label(self, idx: torch.Tensor) -> torch.Tensor:
        x_adv = self.adversarial_example(idx)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            logits = self.original(self.data.normalize(x_adv * 255).contiguous(memory_format=self.memory_format))
        logits = logits.float()
        if self.hyper.relabel == "nearest_wrong":
            logits = logits.scatter(1, self.labels[idx][:, None], float("-inf"))
        return logits.argmax(1)

    def run_epoch(self) -> None:
        for idx in self.batches(self.forget_idx, self.hyper.batch_size):
            loss = F.cross_entropy(self.logits(self.model, idx), self.adversarial_labels[idx])
            self.step(self.optimizer, loss)
