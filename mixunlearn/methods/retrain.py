"""Retrain as a runnable method row: the reference recipe, epoch by epoch, so that its time is measured.

The recipe is LAF's (`Train.py`'s classifier training: Adam(lr, weight decay), CE, batch 32), as
mixunlearn/reference.py `train_classifier` runs it for the cached references.

Train a fresh model from scratch on D_r with the recipe of reference.train_classifier (cfg.ref_*: Adam,
cross-entropy), seeded by the run's `seed`: initial weights, shuffle order and augmentation draws as
reference.reference_trainer draws them for that seed. With seed = ref_seed, after ref_epochs epochs on the
CPU it equals the cached Retrain bit for bit; with another seed it is that seed's oracle of the pool
(mixunlearn/judge/pool.py), so a benchmark's "Retrain (re-run)" row over seeds 0, 1, 2 shows retraining's
own seed-to-seed spread (EVALUATION.md: the noise floor). It is the yardstick, not a contender: it trains
on the true labels whatever `targets` says.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mixunlearn.fields import CommonFields
from mixunlearn.data import augment as augment_images
from mixunlearn.models import build_model

from .common import Method


@dataclass
class RetrainHyper:
    epochs: int = 20            # cfg.ref_epochs (LAF: 20)
    batch_size: int = 32        # cfg.ref_batch_size
    lr: float = 1e-4            # Adam, cfg.ref_lr
    weight_decay: float = 1e-4  # Adam's L2 term, cfg.ref_weight_decay
    augment: bool = False       # cfg.ref_augment


class Retrain(Method):
    name = "retrain"
    title = "Retrain (re-run)"   # the row beside the reference "Retrain" row it reproduces
    Hyper = RetrainHyper
    reads_labels = ()           # reads the true D_r labels, never the visible ones (see above)
    checkpointed = ("model", "optimizer", "shuffle", "augmentation")

    @classmethod
    def default_hyper(cls, cfg: CommonFields) -> RetrainHyper:
        return RetrainHyper(epochs=cfg.ref_epochs, batch_size=cfg.ref_batch_size, lr=cfg.ref_lr,
                            weight_decay=cfg.ref_weight_decay, augment=cfg.ref_augment)

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        h = self.hyper
        # The initial weights of the reference of this seed: on a forked RNG (reference.fresh_model).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            fresh = build_model(cfg.model, num_classes=data.num_classes, in_channels=data.in_channels,
                                image_size=data.image_size)
        self.model = fresh.to(self.device, memory_format=self.memory_format).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=h.lr, weight_decay=h.weight_decay,
                                          fused=self.cuda)
        self.true_labels = split.train_labels.to(self.device)
        # train_classifier's two generators, seeded the same way; their states are checkpointed.
        self.shuffle = torch.Generator().manual_seed(cfg.seed)
        self.augmentation = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)

    def run_epoch(self) -> None:
        h = self.hyper
        order = self.retain_idx[torch.randperm(len(self.retain_idx), generator=self.shuffle).to(self.device)]
        for batch in order.split(h.batch_size):
            images = self.data.train_images[batch]
            self.images += len(batch)
            if h.augment:
                images = augment_images(images, self.augmentation)
            x = self.data.normalize(images).contiguous(memory_format=self.memory_format)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
                loss = F.cross_entropy(self.model(x), self.true_labels[batch])
            self.step(self.optimizer, loss)
