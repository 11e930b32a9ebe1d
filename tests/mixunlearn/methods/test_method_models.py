"""Every method trains an epoch on every task and on the ResNet tracks (issue 8: each method works with
cnn_small, resnet18_cifar and resnet18_laf, and on every task), on tiny data so this stays seconds on a CPU.

These check shapes, stages, embeddings, label access and the contract, not forgetting (test_contract does).
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from mixunlearn.config import UnlearnConfig
from mixunlearn.data import ImageData
from mixunlearn.methods import METHODS
from mixunlearn.models import build_model
from mixunlearn.run import prepare
from mixunlearn.tasks import ForgetSplit


def synthetic(n: int, *, channels: int, size: int) -> ImageData:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 10
    return ImageData(name="synthetic", train_images=images, train_labels=labels, test_images=images[:4],
                     test_labels=labels[:4], num_classes=10, mean=(0.5,) * channels, std=(0.25,) * channels,
                     fingerprint="synthetic", source="random")


def class_split(data: ImageData) -> ForgetSplit:
    labels = data.train_labels
    forget = torch.nonzero(labels == 0).flatten()
    return ForgetSplit(task="class", forget_idx=forget, retain_idx=torch.nonzero(labels != 0).flatten(),
                       train_labels=labels, labelled=torch.ones(len(labels), dtype=torch.bool), forget_classes=(0,),
                       fingerprint=data.fingerprint, spec={})


def one_epoch(model_name: str, name: str, data: ImageData, *, batch_size: int) -> None:
    cfg = UnlearnConfig(model=model_name, targets="aware", ref_epochs=1, ref_batch_size=batch_size,
                        eval_batch_size=64)
    torch.manual_seed(0)
    original = build_model(model_name, num_classes=10, in_channels=data.in_channels,
                           image_size=data.image_size).eval().requires_grad_(False)
    cls = METHODS[name]
    hyper = cls.default_hyper(cfg)
    # One short epoch: small batches, and LAF's stage-0 VAEs for one epoch.
    small = {k: v for k, v in {"batch_size": batch_size, "forget_batch_size": batch_size, "vae_epochs": 1}.items()
             if k in {f.name for f in dataclasses.fields(hyper)}}
    loop = cls(cfg, data, class_split(data), original=original, device="cpu", hyper=dataclasses.replace(hyper, **small))
    loop.train_epoch()
    assert loop.epoch == 1 and loop.seconds > 0
    assert type(loop.model) is type(original)
    with torch.no_grad():
        assert loop.model.eval()(data.normalize(data.train_images[:2])).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_runs_an_epoch_on_resnet18_cifar(name):
    one_epoch("resnet18_cifar", name, synthetic(20, channels=3, size=16), batch_size=8)


# The 224x224 track costs ~0.3 s per image step on this CPU: the methods whose code depends on the
# network's structure (the output layer, the stages, the embedding) run it; the rest share its code paths.
@pytest.mark.parametrize("name", ["cf_k", "eu_k", "boundary_expanding", "laf", "laf_r"])
def test_structure_dependent_methods_run_an_epoch_on_resnet18_laf(name):
    one_epoch("resnet18_laf", name, synthetic(4, channels=3, size=8), batch_size=2)


# Each task once, the label modes alternating (test_contract checks both modes on the class task).
@pytest.mark.parametrize("task, targets", [("data", "aware"), ("random", "agnostic"), ("noisy", "agnostic"),
                                           ("semi", "aware")])
def test_every_method_runs_an_epoch_on_every_task(tmp_path_factory, task, targets):
    cfg = UnlearnConfig(dataset="tiny", model="cnn_small", task=task, targets=targets, ref_epochs=2, mia_samples=50)
    prepared = prepare(cfg, device="cpu", cache_dir=tmp_path_factory.getbasetemp() / "tiny-tasks")
    for name, cls in METHODS.items():
        hyper = cls.default_hyper(cfg)
        loop = cls(cfg, prepared.data, prepared.split, original=prepared.references.original, device="cpu",
                   hyper=dataclasses.replace(hyper, **({"vae_epochs": 1} if hasattr(hyper, "vae_epochs") else {})))
        loop.train_epoch()
        assert loop.epoch == 1, name
