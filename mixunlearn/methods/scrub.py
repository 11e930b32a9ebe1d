"""SCRUB (Kurmanji et al., SC), as DU's "scrubv2" runs it: a student moves away from f_D on D_f and stays
close on D_r, and (selection: rewind) the epoch whose forget error matches unseen data is returned.

DU `munl/unlearning/scrubv2.py` (`SCRUBUnlearningV2.unlearn`, from SC's `MIA_experiments.ipynb`), with
`train_distill` in DU's `thirdparty/repdistiller/helper/loops.py` and `DistillKL` in `distiller_zoo/KD.py`:
teacher = f_D (frozen, eval mode; its logits are computed once), student = a copy of f_D in train mode.
For each epoch e = 1..E:
- LR = lr * 0.1^#(e > m) over the milestones m = int(0.5 E), int(0.8 E), int(0.9 E) (`adjust_learning_rate`);
- if e <= msteps, the max step: one pass over D_f minimising -KL_T(student || teacher); DU's forget loader
  does not shuffle, so D_f's batches come in index order;
- then the min step: one pass over D_r minimising gamma * CE + alpha * KL_T.
KL_T = KL(softmax(t / T) || softmax(s / T)) * T^2, summed, divided by the batch size (`DistillKL`).
DU's `param_dist(model_s, swa_model=model_s, smoothing)` term is the student's distance to itself: 0.

[choice] selection (BASELINES.md "Model selection"):
- "rewind" (DU's scrubv2, default; SC's "SCRUB+R"): keep the model after every epoch (epoch 0 = f_D); at
  the end, return the one whose forget error (100 - its accuracy on D_f) is closest to the final model's
  error on the forget validation set (the first such epoch on a tie, as DU's `min`). DU's code returns the
  final model when the closest is epoch 0 (`if selected_idx != 0`); here epoch 0 returns f_D's weights.
- "final" (SC's "SCRUB"): the model after the last epoch.
The forget validation set is DU's: the held-out images of the classes D_f holds (DU filters its validation
loader to `np.unique(forget targets)`). Here that is the test set's images of the classes of D_f's samples:
class task: Test_f, the forgotten class; data task: classes 5-9 (data_classes); random task: every class,
the whole test set; noisy task: the noisy classes (D_f's own classes before corruption); semi: as its base.
Which test images belong to those classes is the task's definition (Test_f), not a label the method learns
from; the errors are measured against the labels this run may read: the true ones when label-aware, f_D's
arg-max when label-agnostic (on D_f the run's visible labels, on the test images f_D's prediction).
Sources (BASELINES.md, DU's defaults): SGD lr 5e-4, momentum 0.9, wd 5e-4, gamma 1, alpha 0.5,
msteps 3, T 2 (SC's MIA notebook: 4), 5 epochs, batch 32 (retain) / 64 (forget).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .common import SGD_MOMENTUM, SGD_WEIGHT_DECAY, Method


@dataclass
class SCRUBHyper:
    choices: ClassVar[dict[str, tuple[str, ...]]] = {"selection": ("rewind", "final")}
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
    selection: str = "rewind"                 # [choice] "rewind" (DU's scrubv2, SC's SCRUB+R) or "final"


def kl_t(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)) * T^2, summed over the batch and divided by its size."""
    return F.kl_div(F.log_softmax(student / T, dim=1), F.softmax(teacher / T, dim=1),
                    reduction="sum") * T * T / student.shape[0]


class SCRUB(Method):
    name = "scrub"
    title = "SCRUB"
    Hyper = SCRUBHyper
    reads_labels = ("retain", "forget")       # the forget labels only for rewind's forget error
    cnn_defaults = {"lr": 0.01}
    checkpointed = ("model", "optimizer", "max_steps", "forget_errors", "epoch_models", "selected_epoch")

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        assert self.hyper.selection in ("rewind", "final"), f"scrub selection {self.hyper.selection!r}"
        self.model, self.optimizer = self.copy_with_sgd(original)
        everyone = torch.arange(len(split.train_labels), device=self.device)
        self.teacher_logits = self.frozen_logits(original, everyone)
        self.max_steps = 0   # max steps taken so far (tests check they stop after msteps epochs)
        # rewind: the forget error after epochs 0..e, the weights after epochs 1..e (CPU), the epoch chosen
        self.forget_errors: list[float] = []
        self.epoch_models: list[dict[str, torch.Tensor]] = []
        self.selected_epoch = -1
        if self.hyper.selection == "rewind":
            self.forget_errors.append(self.forget_error())

    # ---- rewind's two errors ------------------------------------------------------------------------
    @torch.no_grad()
    def forget_error(self) -> float:
        """100 - the model's accuracy (%) on D_f against this run's visible labels (DU's `validate`)."""
        predicted = self.frozen_logits(self.model, self.forget_idx).argmax(1)
        return 100.0 - 100.0 * float((predicted == self.labels[self.forget_idx]).float().mean())

    @torch.no_grad()
    def forget_validation_error(self) -> float:
        """100 - the model's accuracy (%) on the test images of D_f's classes (see the module docstring)."""
        classes = self.split.original_labels[self.split.forget_idx].unique().to(self.data.test_labels.device)
        images = self.data.test_images[torch.isin(self.data.test_labels, classes)]
        if len(images) == 0:
            return math.nan
        aware = self.cfg.targets == "aware" and self.cfg.task != "semi"
        truth = self.data.test_labels[torch.isin(self.data.test_labels, classes)].to(self.device)
        predicted, teacher = [], []
        self.model.eval()
        for chunk in images.split(self.cfg.eval_batch_size):
            x = self.data.normalize(chunk).contiguous(memory_format=self.memory_format)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
                predicted.append(self.model(x).float().argmax(1))
                if not aware:
                    teacher.append(self.original(x).float().argmax(1))
        self.model.train()
        labels = truth if aware else torch.cat(teacher)
        return 100.0 - 100.0 * float((torch.cat(predicted) == labels).float().mean())

    def rewind(self) -> None:
        """Load the weights of the epoch whose forget error is closest to the forget validation error."""
        target = self.forget_validation_error()
        if math.isnan(target):
            self.selected_epoch = self.epoch + 1   # no held-out image of D_f's classes: the final model
            return
        self.selected_epoch = min(range(len(self.forget_errors)), key=lambda e: abs(self.forget_errors[e] - target))
        if self.selected_epoch == 0:
            self.model.load_state_dict(self.original.state_dict())
        elif self.selected_epoch < len(self.forget_errors) - 1:
            self.model.load_state_dict(self.epoch_models[self.selected_epoch - 1])
        self.epoch_models = []   # chosen: the others are no longer needed

    # ---- one epoch ----------------------------------------------------------------------------------
    def run_epoch(self) -> None:
        h = self.hyper
        e = self.epoch + 1
        milestones = [math.floor(f * h.epochs) for f in (0.5, 0.8, 0.9)]
        self.set_lr(self.optimizer, h.lr * 0.1 ** sum(e > m for m in milestones))
        self.model.train()
        if e <= h.msteps:
            for idx in self.forget_idx.split(h.forget_batch_size):   # DU's forget loader: no shuffle
                self.step(self.optimizer, -kl_t(self.logits(self.model, idx), self.teacher_logits[idx], h.T))
                self.max_steps += 1
        for idx in self.batches(self.retain_idx, h.batch_size):
            logits = self.logits(self.model, idx)
            loss = (h.gamma * F.cross_entropy(logits, self.labels[idx])
                    + h.alpha * kl_t(logits, self.teacher_logits[idx], h.T))
            self.step(self.optimizer, loss)
        if h.selection == "rewind":
            self.forget_errors.append(self.forget_error())
            if e < h.epochs:
                self.epoch_models.append({k: v.detach().to("cpu", copy=True)
                                          for k, v in self.model.state_dict().items()})
            else:
                self.rewind()

    def diagnostics(self) -> dict[str, float]:
        """The epoch rewind returned (logged beside the metrics of the last epoch); -1 before it chose."""
        return {"scrub_selected_epoch": float(self.selected_epoch)} if self.hyper.selection == "rewind" else {}
