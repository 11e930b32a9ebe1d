"""SalUn: RL whose updates touch only the most salient weights for the forget set.

SU `Classification/generate_mask.py` (`save_gradient_ratio`: f_D in eval mode, the gradient of
-criterion summed over the forget loader, all parameters ranked together) for the mask, then SU
`Classification/unlearn/RL.py` (`RL` with `mask`): `_apply_mask_to_grads` before each step and
`_restore_masked_params` (masked-out weights back to their start values, their momentum zeroed) after it.

1. Mask, once, from f_D in eval mode: g = |sum over D_f batches of grad_theta(-CE(f(x_f), y_f))|, all
   parameters ranked together; mask = 1 on the top `mask_ratio` fraction: int(#params * ratio) weights,
   truncated as SU's `threshold_index = int(len(all_elements) * i)`.
2. RL (rl.py), with grad <- grad * mask before each optimiser step.
   [choice] reset (SU's current code, default): after each step the masked-out weights and their
   momentum are put back, so weight decay and momentum cannot move them; "grad_only" (DU) masks the
   gradients only.
Sources (BASELINES.md): as RL, SU's CIFAR-10 command: 10 epochs, lr 0.013, ratio 0.5.
Labels: D_f for the mask, D_r for training.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .common import SGD_MOMENTUM, SGD_WEIGHT_DECAY
from .rl import RL


@dataclass
class SalUnHyper:
    choices: ClassVar[dict[str, tuple[str, ...]]] = {"mixing": ("sequential", "concat"),
                                                     "masking": ("reset", "grad_only")}
    epochs: int = 10                          # SU
    batch_size: int = 256
    lr: float = 0.013                         # SGD, SU
    momentum: float = SGD_MOMENTUM
    weight_decay: float = SGD_WEIGHT_DECAY
    mixing: str = "sequential"                # as RL
    mask_ratio: float = 0.5                   # fraction of parameters trained; searched in [0, 1]
    masking: str = "reset"                    # [choice] "reset" (SU) or "grad_only" (DU)


class SalUn(RL):
    name = "salun"
    title = "SalUn"
    Hyper = SalUnHyper
    reads_labels = ("retain", "forget")
    cnn_defaults = {"epochs": 5, "batch_size": 64, "lr": 0.013}
    checkpointed = ("model", "optimizer", "mask")

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        assert self.hyper.masking in ("reset", "grad_only"), f"salun masking {self.hyper.masking!r}"
        self.mask = self.saliency_mask(self.saliency())
        self.params = dict(self.model.named_parameters())
        self.start = {k: v.detach().clone() for k, v in self.params.items()}

    def saliency(self) -> dict[str, torch.Tensor]:
        """|sum over D_f batches of the gradient of -CE| per parameter, f_D's weights in eval mode."""
        net = self.model.eval()
        net.zero_grad(set_to_none=True)
        for idx in self.forget_idx.split(self.hyper.batch_size):
            (-F.cross_entropy(self.logits(net, idx), self.labels[idx])).backward()
        grads = {k: p.grad.detach().abs().float() for k, p in net.named_parameters()}
        net.zero_grad(set_to_none=True)
        net.train()
        return grads

    def saliency_mask(self, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        flat = torch.cat([g.flatten() for g in grads.values()])
        keep = int(flat.numel() * self.hyper.mask_ratio)   # SU truncates (generate_mask.py)
        chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
        chosen[torch.argsort(flat, descending=True, stable=True)[:keep]] = True
        masks, start = {}, 0
        for k, g in grads.items():
            masks[k] = chosen[start:start + g.numel()].view_as(g)
            start += g.numel()
        return masks

    def before_step(self) -> None:
        for k, p in self.params.items():
            if p.grad is not None:
                p.grad.mul_(self.mask[k])

    @torch.no_grad()
    def after_step(self) -> None:
        if self.hyper.masking != "reset":
            return
        for k, p in self.params.items():
            p.copy_(torch.where(self.mask[k], p, self.start[k]))
            buffer = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buffer is not None:
                buffer.mul_(self.mask[k])
