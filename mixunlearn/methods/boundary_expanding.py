"""Boundary Expanding (SU): teach D_f an extra "shadow" class, then drop the shadow output.

SU `Classification/unlearn/boundary_ex.py` (`expand_model`, `boundary_expanding_iter`): the last linear
layer gets one more output row (a fresh nn.Linear whose first rows copy f_D's), every forget sample's
target is that row (`target_label *= num_classes`), CE, model in train mode, `impl.py`'s SGD.

The output layer is widened by one row: the trained network is a copy of f_D plus a shadow row (weight
and bias) on the input of its last linear layer, so that `model` keeps f_D's class and, without the
row, is the pruned network the paper describes (SU's code omits the pruning step). Training: CE of the
widened logits against the shadow class on D_f, all parameters. Reads no label, but D_f is known.
BASELINES.md names no optimiser values, so the common SGD ones are the default (lr 0.01, 10 epochs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import SGD_MOMENTUM, SGD_WEIGHT_DECAY, Method, captured_input, last_linear

SHADOW_SEED_OFFSET = 3   # the shadow row's initial weights: cfg.seed + 3


@dataclass
class BoundaryExpandingHyper:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.01                          # SGD
    momentum: float = SGD_MOMENTUM
    weight_decay: float = SGD_WEIGHT_DECAY


class BoundaryExpanding(Method):
    name = "boundary_expanding"
    title = "Boundary Expanding"
    Hyper = BoundaryExpandingHyper
    reads_labels = ()
    cnn_defaults = {"epochs": 5, "batch_size": 64, "lr": 1e-3}
    checkpointed = ("model", "optimizer", "shadow")

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        h = self.hyper
        self.model = self.trainable_copy(original)
        self.output_layer = last_linear(self.model)
        fan_in = self.output_layer.in_features
        with self.seeded(SHADOW_SEED_OFFSET):
            weight = torch.empty(1, fan_in)
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))   # nn.Linear's own initialisation
            bias = torch.empty(1).uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        self.shadow = nn.ParameterDict({"weight": nn.Parameter(weight.to(self.device)),
                                        "bias": nn.Parameter(bias.to(self.device))})
        self.optimizer = self.sgd([*self.model.parameters(), *self.shadow.values()], lr=h.lr,
                                  momentum=h.momentum, weight_decay=h.weight_decay)

    def widened_logits(self, idx: torch.Tensor) -> torch.Tensor:
        with captured_input(self.output_layer) as seen, torch.autocast("cuda", dtype=torch.bfloat16,
                                                                        enabled=self.cuda):
            logits = self.model(self.inputs(idx))
            shadow = F.linear(seen[0], self.shadow["weight"], self.shadow["bias"])
        return torch.cat([logits.float(), shadow.float()], dim=1)

    def run_epoch(self) -> None:
        for idx in self.batches(self.forget_idx, self.hyper.batch_size):
            shadow_class = torch.full((len(idx),), self.num_classes, device=self.device)
            self.step(self.optimizer, F.cross_entropy(self.widened_logits(idx), shadow_class))
