"""MixBlock: the adversarial mixup generator G (METHOD.md "The generator G").

G reads the frozen f_D's feature maps of a forget sample and a retain sample, conditioned on
lambda ~ Beta(alpha, alpha), and outputs a two-channel pixel mask M (M[:,0] + M[:,1] = 1) that
mixes the two images: x_mix = x_f * M[:,0] + x_r * M[:,1]. M[:,0] is the forget side's share.

Two forms (METHOD.md "What the released code shows"):
- "two_way": the release's generator, AdAutoMix's AdaptiveMask (OpenMixup
  `openmixup/models/heads/adaptive_mask.py`, `normal_mix`): q, k, v on both sides, cross-attention both
  ways, softmax over the two channels. 66,306 parameters at C = 256.
- "one_way": AutoMix's PixelMixBlock (OpenMixup `pmix_block.py`), for comparison only: one 1x1 conv serves
  as q (forget side) and k (retain side), the value is read from the retain side, and sigmoid(P v) is the
  retain side's share m, M = [1 - m, m]. 33,282 parameters.
And the choices the unreleased config leaves open, as AdaptiveMask offers them:
- upsample: the mask's h x w to the image, "nearest" (AdaptiveMask's default) or "bilinear" (AdAutoMix's
  ResNet configs);
- lambda_concat: append the constant lambda (forget side) and 1 - lambda (retain side) as a channel
  (`lam_concat`, default); False: G never sees lambda (AdAutoMix's CIFAR configs), C channels in.
G always runs in float32, outside any autocast, as AdaptiveMask computes its attention: bf16 cannot hold the
small differences a freshly initialised G makes (DEVELOPERS.md).

    g = MixBlock(channels=256)                                   # two_way, ReLU after q and k
    g = MixBlock(channels=256, form="one_way", act="none")       # PixelMixBlock's defaults
    g = MixBlock(channels=256, upsample="bilinear", lambda_concat=False)   # AdAutoMix's CIFAR ResNet-18
    mask = g(h_f, h_r, lam, image_size=32)                       # [B, 2, 32, 32], float32
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FORMS = ("two_way", "one_way")
ACTS = ("relu", "none")
UPSAMPLES = ("nearest", "bilinear")


class MixBlock(nn.Module):
    def __init__(self, channels: int, reduction: int = 2, *, form: str = "two_way", act: str = "relu",
                 upsample: str = "nearest", lambda_concat: bool = True) -> None:
        super().__init__()
        assert form in FORMS and act in ACTS and upsample in UPSAMPLES, (form, act, upsample)
        self.form, self.upsample, self.lambda_concat = form, upsample, lambda_concat
        hidden = channels // reduction
        # +1 input channel: the constant lambda (forget side) or 1 - lambda (retain side), step 1.
        inputs = channels + 1 if lambda_concat else channels

        def projection() -> nn.Module:
            conv = nn.Conv2d(inputs, hidden, 1)
            return nn.Sequential(conv, nn.ReLU()) if act == "relu" else nn.Sequential(conv)

        self.query = projection()
        # one_way: OpenMixup's PixelMixBlock has no key conv of its own; the query conv reads both sides.
        self.key = projection() if form == "two_way" else None
        self.value = nn.Conv2d(inputs, 1, 1)
        self.scale = 1.0 / math.sqrt(hidden)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, h_f: torch.Tensor, h_r: torch.Tensor, lam: torch.Tensor, image_size: int) -> torch.Tensor:
        # float32 whatever the caller's autocast (the features may be cached in bf16 on the GPU).
        with torch.autocast(h_f.device.type, enabled=False):
            return self._mask(h_f.float(), h_r.float(), lam.float(), image_size)

    def _mask(self, h_f: torch.Tensor, h_r: torch.Tensor, lam: torch.Tensor, image_size: int) -> torch.Tensor:
        b, _, h, w = h_f.shape
        f, r = h_f, h_r
        if self.lambda_concat:
            lam = lam.view(b, 1, 1, 1).expand(b, 1, h, w)
            f, r = torch.cat([h_f, lam], dim=1), torch.cat([h_r, 1.0 - lam], dim=1)
        if self.form == "one_way":
            return self._one_way(f, r, image_size)

        q_f, q_r = self.query(f).flatten(2), self.query(r).flatten(2)   # [B, C/2, hw]
        k_f, k_r = self.key(f).flatten(2), self.key(r).flatten(2)
        v_f, v_r = self.value(f).flatten(2), self.value(r).flatten(2)   # [B, 1, hw]

        # Step 3: cross-attention both ways over the h*w positions.
        a = torch.softmax(q_f.transpose(1, 2) @ k_r * self.scale, dim=-1)       # [B, hw, hw]
        a_prime = torch.softmax(q_r.transpose(1, 2) @ k_f * self.scale, dim=-1)
        m_f = (a @ v_f.transpose(1, 2)).view(b, 1, h, w)
        m_r = (a_prime @ v_r.transpose(1, 2)).view(b, 1, h, w)

        # Step 4: upsampling to the image, softmax over the two channels -> a partition of unity.
        return torch.softmax(self._to_image(torch.cat([m_f, m_r], dim=1), image_size), dim=1)

    def _to_image(self, logits: torch.Tensor, image_size: int) -> torch.Tensor:
        size = (image_size, image_size)
        if self.upsample == "bilinear":   # F.interpolate's default corners, as AdaptiveMask calls it
            return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return F.interpolate(logits, size=size, mode="nearest")

    def _one_way(self, f: torch.Tensor, r: torch.Tensor, image_size: int) -> torch.Tensor:
        """OpenMixup's pixel form: P = softmax(q(f) k(r)^T / sqrt(C/2)) with k = q, m = sigmoid(P v(r))."""
        b, _, h, w = f.shape
        q_f, k_r = self.query(f).flatten(2), self.query(r).flatten(2)   # [B, C/2, hw]
        v_r = self.value(r).flatten(2)                                   # [B, 1, hw]
        p = torch.softmax(q_f.transpose(1, 2) @ k_r * self.scale, dim=-1)   # [B, hw, hw]
        logit = (p @ v_r.transpose(1, 2)).view(b, 1, h, w)
        retain_share = torch.sigmoid(self._to_image(logit, image_size))
        return torch.cat([1.0 - retain_share, retain_share], dim=1)


def plain_mixup_mask(lam: torch.Tensor, image_size: int) -> torch.Tensor:
    """The "without MixBlock" ablation: a constant Beta(alpha, alpha) mixup mask [lambda, 1 - lambda]."""
    lam = lam.float().view(-1, 1, 1, 1)
    return torch.cat([lam, 1.0 - lam], dim=1).expand(-1, 2, image_size, image_size)


def mix(x_f: torch.Tensor, x_r: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Step 5: the mixed sample in pixel space, x_mix = x_f * M[:,0] + x_r * M[:,1]."""
    return x_f * mask[:, 0:1].to(x_f.dtype) + x_r * mask[:, 1:2].to(x_r.dtype)
