"""Forget-set specifications (METHOD.md "Unlearning tasks"): which training samples form D_f.

    split = make_split(UnlearnConfig(task="data", data_classes=[5, 6, 7, 8, 9], data_ratio=0.4), data)
    split.save_parquet(cache / "splits" / f"{split.key()}.parquet")
    same = ForgetSplit.load_parquet(path, data)   # verifies the data fingerprint, rebuilds the identical split

A split is a pure function of (data, the task's fields, cfg.ref_seed): every draw comes from a numpy
Generator seeded by ref_seed, never from global RNG state.
  class   D_f = every training sample of forget_class.
  data    D_f = data_ratio of the samples of each of data_classes (LAF: 40% of classes 5-9).
  random  D_f = random_ratio of all training samples (SalUn: 10%).
  noisy   noise_ratio of the samples of each of noisy_classes get a uniformly random WRONG label before f_D is
          trained; D_f = the mislabelled samples; train_labels carries the corrupted labels.
  semi    the split of semi_base (class or data), with only a label_fraction random subset of all training
          samples labelled during unlearning.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mixunlearn.fields import CommonFields, ConfigError
from mixunlearn.data import ImageData

LABELLED_STREAM = 1   # semi: the labelled subset is drawn from its own stream, so D_f equals semi_base's exactly
META = "mixunlearn."  # prefix of this module's keys in the Parquet schema metadata


class TaskSpecError(ConfigError):
    """A forget task that is impossible for this data set; the message names the field and what is allowed."""


@dataclass
class ForgetSplit:
    task: str
    forget_idx: torch.Tensor       # int64, sorted, indices into data.train_* (CPU)
    retain_idx: torch.Tensor       # int64, sorted, the complement (CPU)
    train_labels: torch.Tensor     # int64 [n]: labels f_D / Retrain train on (noisy task: the corrupted copy)
    labelled: torch.Tensor         # bool [n]: label visible during unlearning (semi: label_fraction of samples)
    forget_classes: tuple[int, ...]  # classes wholly forgotten (class task, semi on class); else ()
    fingerprint: str               # the data fingerprint
    spec: dict[str, Any]           # the task fields that define it (+ ref_seed)
    original_labels: torch.Tensor | None = None  # int64 [n]: the data set's labels (differ from train_labels only
                                                 # on noisy D_f); None = train_labels, for splits built by hand

    def __post_init__(self) -> None:
        if self.original_labels is None:
            self.original_labels = self.train_labels

    def key(self) -> str:
        """sha256 of (data fingerprint, spec): names the split and everything trained on it."""
        return hashlib.sha256(json.dumps({"fingerprint": self.fingerprint, "spec": self.spec},
                                         sort_keys=True).encode()).hexdigest()

    def save_parquet(self, path: str | Path) -> Path:
        """One row per D_f sample (index, original label, train label); fingerprint and spec in the metadata."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table({
            "forget_idx": pa.array(self.forget_idx.numpy(), pa.int64()),
            "original_label": pa.array(self.original_labels[self.forget_idx].numpy(), pa.int64()),
            "train_label": pa.array(self.train_labels[self.forget_idx].numpy(), pa.int64()),
        })
        metadata = {
            "task": self.task,
            "fingerprint": self.fingerprint,
            "spec": json.dumps(self.spec, sort_keys=True),
            "forget_classes": json.dumps(list(self.forget_classes)),
            "num_train": str(len(self.train_labels)),
            "labelled": base64.b64encode(np.packbits(self.labelled.numpy()).tobytes()).decode(),
        }
        table = table.replace_schema_metadata({f"{META}{k}": v for k, v in metadata.items()})
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)   # atomic: trials sharing a split cache never read half a file
        return path

    @classmethod
    def load_parquet(cls, path: str | Path, data: ImageData) -> ForgetSplit:
        """The split saved at `path`, checked against `data` (same fingerprint, same original labels)."""
        table = pq.read_table(path)
        raw = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        metadata = {k[len(META):]: v for k, v in raw.items() if k.startswith(META)}
        if "fingerprint" not in metadata:
            raise TaskSpecError(f"split file {path} has no mixunlearn metadata; remake it with make_split")
        if metadata["fingerprint"] != data.fingerprint:
            raise TaskSpecError(
                f"split file {path} was made for data fingerprint {metadata['fingerprint'][:12]}..., but the "
                f"loaded {data.name!r} has {data.fingerprint[:12]}...; load the same dataset, train_subset and "
                f"test_subset, or remake the split")
        original_labels = data.train_labels.cpu()
        n = len(original_labels)
        forget_idx = torch.from_numpy(table.column("forget_idx").to_numpy().astype(np.int64))
        stored_original = torch.from_numpy(table.column("original_label").to_numpy().astype(np.int64))
        assert int(metadata["num_train"]) == n and torch.equal(original_labels[forget_idx], stored_original), \
            f"{path}: the stored labels disagree with data of the same fingerprint"
        train_labels = original_labels.clone()
        train_labels[forget_idx] = torch.from_numpy(table.column("train_label").to_numpy().astype(np.int64))
        packed = np.frombuffer(base64.b64decode(metadata["labelled"]), np.uint8)
        labelled = torch.from_numpy(np.unpackbits(packed, count=n).astype(bool))
        return cls(task=metadata["task"], forget_idx=forget_idx, retain_idx=complement(forget_idx, n),
                   train_labels=train_labels, labelled=labelled,
                   forget_classes=tuple(json.loads(metadata["forget_classes"])), fingerprint=data.fingerprint,
                   spec=json.loads(metadata["spec"]), original_labels=original_labels)


def make_split(cfg: CommonFields, data: ImageData) -> ForgetSplit:
    """The forget split cfg.task names, on data's training set; a pure function of (data, task fields, ref_seed).

    Raises:
        TaskSpecError: the task is impossible here (a class out of range, an empty D_f or D_r, ...).
    """
    if cfg.ref_seed < 0:
        refuse("ref_seed", cfg.ref_seed, "use a non-negative integer")
    labels = data.train_labels.cpu().numpy()
    base = cfg.semi_base if cfg.task == "semi" else cfg.task
    forget_idx, train_labels, forget_classes, spec = forget_set(base, cfg, labels, data)
    n = len(labels)
    labelled = np.ones(n, bool)
    if cfg.task == "semi":
        count = int(round(cfg.label_fraction * n))
        if count == 0:
            refuse("label_fraction", cfg.label_fraction,
                   f"it labels none of the {n} training samples; use at least 1/{n} or a larger train_subset")
        labelled[:] = False
        labelled[np.random.default_rng([cfg.ref_seed, LABELLED_STREAM]).permutation(n)[:count]] = True
        spec = {"task": "semi", "semi_base": base, "label_fraction": cfg.label_fraction,
                **{k: v for k, v in spec.items() if k != "task"}}
    if len(forget_idx) == n:
        refuse(*forget_field(base, cfg), f"it forgets all {n} training samples of {data.name}, leaving D_r empty; "
                                         "forget less or use a larger train_subset")
    forget_idx = torch.from_numpy(np.sort(forget_idx).astype(np.int64))
    return ForgetSplit(task=cfg.task, forget_idx=forget_idx, retain_idx=complement(forget_idx, n),
                       train_labels=torch.from_numpy(train_labels.astype(np.int64)),
                       labelled=torch.from_numpy(labelled), forget_classes=forget_classes,
                       fingerprint=data.fingerprint, spec=spec, original_labels=torch.from_numpy(labels.copy()))


def forget_set(task: str, cfg: CommonFields, labels: np.ndarray, data: ImageData
               ) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], dict[str, Any]]:
    """(forget_idx, train_labels, forget_classes, spec) of one of the class/data/random/noisy tasks."""
    rng = np.random.default_rng(cfg.ref_seed)
    if task == "class":
        check_classes("forget_class", [cfg.forget_class], data, value=cfg.forget_class)
        forget_idx = np.flatnonzero(labels == cfg.forget_class)
        if len(forget_idx) == 0:
            refuse("forget_class", cfg.forget_class, f"this {data.name} subset has no training sample of it")
        return forget_idx, labels, (cfg.forget_class,), {"task": task, "forget_class": cfg.forget_class,
                                                         "ref_seed": cfg.ref_seed}
    if task == "data":
        check_classes("data_classes", cfg.data_classes, data)
        forget_idx = per_class_sample(labels, cfg.data_classes, cfg.data_ratio, rng, "data_ratio", data)
        return forget_idx, labels, (), {"task": task, "data_classes": list(cfg.data_classes),
                                        "data_ratio": cfg.data_ratio, "ref_seed": cfg.ref_seed}
    if task == "random":
        count = int(round(cfg.random_ratio * len(labels)))
        if count == 0:
            refuse("random_ratio", cfg.random_ratio, f"it forgets none of the {len(labels)} training samples of "
                                                     f"{data.name}; use a larger ratio or a larger train_subset")
        forget_idx = rng.permutation(len(labels))[:count]
        return forget_idx, labels, (), {"task": task, "random_ratio": cfg.random_ratio, "ref_seed": cfg.ref_seed}
    if task == "noisy":
        check_classes("noisy_classes", cfg.noisy_classes, data)
        forget_idx = per_class_sample(labels, cfg.noisy_classes, cfg.noise_ratio, rng, "noise_ratio", data)
        forget_idx = np.sort(forget_idx)   # the wrong labels below are drawn in index order
        train_labels = labels.copy()
        # Adding 1..K-1 modulo K gives each wrong class with equal probability and never the true one.
        shift = rng.integers(1, data.num_classes, size=len(forget_idx))
        train_labels[forget_idx] = (labels[forget_idx] + shift) % data.num_classes
        return forget_idx, train_labels, (), {"task": task, "noisy_classes": list(cfg.noisy_classes),
                                              "noise_ratio": cfg.noise_ratio, "ref_seed": cfg.ref_seed}
    raise AssertionError(f"unknown task {task!r}")   # CommonFields.validate_common admits only the tasks above


def per_class_sample(labels: np.ndarray, classes: list[int], ratio: float, rng: np.random.Generator,
                     ratio_field: str, data: ImageData) -> np.ndarray:
    """round(ratio * count) samples drawn without replacement from each class in `classes`."""
    chosen = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        chosen.append(rng.permutation(members)[:int(round(ratio * len(members)))])
    forget_idx = np.concatenate(chosen)
    if len(forget_idx) == 0:
        counts = {c: int((labels == c).sum()) for c in classes}
        refuse(ratio_field, ratio, f"it picks no sample from this {data.name} set (training samples per class: "
                                   f"{counts}); use a larger ratio or a larger train_subset")
    return forget_idx


def check_classes(field: str, classes: list[int], data: ImageData, *, value: Any = None) -> None:
    shown = classes if value is None else value
    allowed = f"{data.name} has classes 0-{data.num_classes - 1}"
    if not classes:
        refuse(field, shown, f"list at least one class; {allowed}")
    if any(not 0 <= c < data.num_classes for c in classes):
        refuse(field, shown, f"it is out of range; {allowed}")
    if len(set(classes)) != len(classes):
        refuse(field, shown, "list each class once")


def forget_field(task: str, cfg: CommonFields) -> tuple[str, Any]:
    """The config field that sets the size of D_f for `task`, with its value (for error messages)."""
    name = {"class": "forget_class", "data": "data_ratio", "random": "random_ratio", "noisy": "noise_ratio"}[task]
    return name, getattr(cfg, name)


def complement(forget_idx: torch.Tensor, n: int) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[forget_idx] = False
    return torch.nonzero(keep).flatten()


def refuse(field: str, value: Any, allowed: str) -> NoReturn:
    raise TaskSpecError(f"{field} = {value!r} is not allowed; {allowed}")
