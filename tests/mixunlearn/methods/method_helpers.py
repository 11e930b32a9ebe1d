"""What the method tests share: the real subset's config, building a method on it, a saved state."""
from __future__ import annotations

import io
from pathlib import Path

import torch

from mixunlearn.config import UnlearnConfig

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

REAL = UnlearnConfig(
    dataset="fashion_mnist", train_subset=100, test_subset=50, task="class", forget_class=0,
    model="cnn_small", targets="agnostic", ref_epochs=8, ref_batch_size=32, ref_lr=1e-3,
    mia_samples=500, seed=0,
)


def build(prepared, cls, cfg=REAL, *, split=None, hyper=None):
    return cls(cfg, prepared.data, split if split is not None else prepared.split,
               original=prepared.references.original, device=prepared.device, hyper=hyper)


def saved(state: dict) -> dict:
    """A state as a trainable would store it and read it back (torch.save, then weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)
