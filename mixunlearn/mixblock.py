"""MixBlock: the adversarial mixup generator G (METHOD.md "The generator G").

G reads the frozen f_D's feature maps of a forget sample and a retain sample, conditioned on
lambda ~ Beta(alpha, alpha), and outputs a two-channel pixel mask M (M[:,0] + M[:,1] = 1) that
mixes the two images: x_mix = x_f * M[:,0] + x_r * M[:,1].

    g = MixBlock(channels=256)                 # 66,306 parameters (reduction 2)
    mask = g(h_f, h_r, lam, image_size=32)     # [B, 2, 32, 32]
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MixBlock(nn.Module):
    def __init__(self, channels: int, reduction: int = 2) -> None:
        super().__init__()
        hidden = channels // reduction
        # +1 input channel: the constant lambda (forget side) or 1 - lambda (retain side), step 1.
        self.query = nn.Sequential(nn.Conv2d(channels + 1, hidden, 1), nn.ReLU())
        self.key = nn.Sequential(nn.Conv2d(channels + 1, hidden, 1), nn.ReLU())
        self.value = nn.Conv2d(channels + 1, 1, 1)
        self.scale = 1.0 / math.sqrt(hidden)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, h_f: torch.Tensor, h_r: torch.Tensor, lam: torch.Tensor, image_size: int) -> torch.Tensor:
        b, _, h, w = h_f.shape
        lam = lam.to(h_f.dtype).view(b, 1, 1, 1).expand(b, 1, h, w)
        f = torch.cat([h_f, lam], dim=1)
        r = torch.cat([h_r.to(h_f.dtype), 1.0 - lam], dim=1)

        q_f, q_r = self.query(f).flatten(2), self.query(r).flatten(2)   # [B, C/2, hw]
        k_f, k_r = self.key(f).flatten(2), self.key(r).flatten(2)
        v_f, v_r = self.value(f).flatten(2), self.value(r).flatten(2)   # [B, 1, hw]

        # Step 3: cross-attention both ways over the h*w positions.
        a = torch.softmax(q_f.transpose(1, 2) @ k_r * self.scale, dim=-1)       # [B, hw, hw]
        a_prime = torch.softmax(q_r.transpose(1, 2) @ k_f * self.scale, dim=-1)
        m_f = (a @ v_f.transpose(1, 2)).view(b, 1, h, w)
        m_r = (a_prime @ v_r.transpose(1, 2)).view(b, 1, h, w)

        # Step 4: nearest upsampling to the image, softmax over the two channels -> a partition of unity.
        logits = F.interpolate(torch.cat([m_f, m_r], dim=1), size=(image_size, image_size), mode="nearest")
        return torch.softmax(logits.float(), dim=1)


def plain_mixup_mask(lam: torch.Tensor, image_size: int) -> torch.Tensor:
    """The "without MixBlock" ablation: a constant Beta(alpha, alpha) mixup mask [lambda, 1 - lambda]."""
    lam = lam.float().view(-1, 1, 1, 1)
    return torch.cat([lam, 1.0 - lam], dim=1).expand(-1, 2, image_size, image_size)


def mix(x_f: torch.Tensor, x_r: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Step 5: the mixed sample in pixel space, x_mix = x_f * M[:,0] + x_r * M[:,1]."""
    return x_f * mask[:, 0:1].to(x_f.dtype) + x_r * mask[:, 1:2].to(x_r.dtype)
