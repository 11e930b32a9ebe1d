"""What the method tests share: the real subset's config, building a method on it, a saved state."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mixunlearn.config import UnlearnConfig
from mixunlearn.data import ImageData, load_data
from mixunlearn.models import build_model
from mixunlearn.tasks import ForgetSplit, make_split

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

REAL = UnlearnConfig(
    dataset="fashion_mnist", train_subset=100, test_subset=50, task="class", forget_class=0,
    model="cnn_small", targets="agnostic", ref_epochs=8, ref_batch_size=32, ref_lr=1e-3,
    mia_samples=500, seed=0,
)


# The parity tests' BatchNorm track: CIFAR-10, 4 training images per class, class 0 forgotten.
RESNET = UnlearnConfig(
    dataset="cifar10", train_subset=4, test_subset=2, task="class", forget_class=0,
    model="resnet18_cifar", targets="aware", eval_batch_size=64, seed=0,
)


@dataclass
class Original:
    original: nn.Module


@dataclass
class TinyPrepared:
    """What a method is built from, without trained references (run.Prepared's fields that build() reads)."""
    cfg: UnlearnConfig
    data: ImageData
    split: ForgetSplit
    references: Original
    device: torch.device


def tiny_prepared(cfg: UnlearnConfig, *, statistics_passes: int = 0) -> TinyPrepared:
    """cfg's data and split, and an untrained f_D (seed 0) whose BatchNorm statistics come from
    `statistics_passes` train-mode passes over D (no weight changes)."""
    data = load_data(cfg)
    split = make_split(cfg, data)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        original = build_model(cfg.model, num_classes=data.num_classes, in_channels=data.in_channels,
                               image_size=data.image_size)
    original.train()
    with torch.no_grad():
        for _ in range(statistics_passes):
            original(data.normalize(data.train_images))
    return TinyPrepared(cfg, data, split, Original(original.eval()), torch.device("cpu"))


def build(prepared, cls, cfg=REAL, *, split=None, hyper=None):
    return cls(cfg, prepared.data, split if split is not None else prepared.split,
               original=prepared.references.original, device=prepared.device, hyper=hyper)


def saved(state: dict) -> dict:
    """A state as a trainable would store it and read it back (torch.save, then weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)
