"""The model pool of an audit, as entries of the reference store, each with its margins beside it.

    pool = Pool(cfg, data, split, store, models=16)
    for job in pool.jobs(methods=[ga_cfg]):          # what an audit needs, in an order that can run as given
        done = pool.run(job, device="cpu")            # trains on a miss (under the store's lock), then margins
    phi = pool.margins(pool.originals())              # [N, n_train + n_test] float32, seeds 0..N-1

For one (data, task, forget set, model, recipe) (EVALUATION.md "The model pool"):
- originals: f_D with seeds 0..N-1, on D;
- oracles: Retrain with seeds 0..N-1, on D \\ F;
- held-out oracles: Retrain with seeds N..2N-1. Exact retraining is scored like a method, and its models
  must not be the oracles it is judged against: these are its "unlearned" models, paired with oracle m;
- unlearned models of a method config: the method applied to original m with seed m.

Every model is an entry of the existing reference store, so it is content-addressed, trained once per
cluster under the store's lock, carries the sha256 of its tensors, and is shared by every method and every
later run: a pool's originals and oracles of seed ref_seed are the very f_D and Retrain every sweep trial
of that config is judged by (mixunlearn/reference.py `reference_inputs`). An unlearned model is keyed by
the method config (its seed set to m, the fields that do not touch the weights left out), the sha256 of
original m, and the forget set.

Margins (mixunlearn/judge/margins.py) are an entry of their own, keyed by the model's sha256: phi over every
training and test point in float32, computed once on whichever device first asks and read by everyone
after, so every metric of every audit reads the same numbers. A killed audit keeps every entry it committed.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mixunlearn.config import UnlearnConfig
from mixunlearn.data import ImageData
from mixunlearn.reference import (ORIGINAL, RETRAIN, fresh_model, load_frozen, reference_inputs, reference_trainer,
                                  tensor_digest)
from mixunlearn.methods.retrain import Retrain
from mixunlearn.reference_store import ReferenceStore
from mixunlearn.tasks import ForgetSplit

from .margins import model_margins

UNLEARNED = "unlearned"
MARGINS_FORMAT = 1
MARGIN_BATCH = 1024   # fixed, so a margins entry does not depend on who computed it with which eval_batch_size
# Config fields that never change an unlearned model's weights: left out of its key.
NOT_WEIGHTS = ("device", "eval_batch_size", "mia_samples", "eval_seed", "attack_draws", "judge_models", "data_root")


@dataclass(frozen=True)
class Job:
    """One model of the pool: an original or an oracle of `seed`, or a method's unlearned model of `seed`."""
    role: str                                  # ORIGINAL, RETRAIN or UNLEARNED
    seed: int
    method: dict[str, Any] | None = None       # UNLEARNED: the method's config (UnlearnConfig.to_dict())

    def label(self) -> str:
        if self.role == UNLEARNED:
            return f"{self.method['method']} seed {self.seed}"
        return f"{'f_D' if self.role == ORIGINAL else 'Retrain'} seed {self.seed}"


@dataclass
class Done:
    """What running a job found or made."""
    job: Job
    sha256: str            # the model's tensors
    margins_sha256: str
    trained: bool          # this call trained the model (False: the store had it)
    seconds: float         # the training's wall time, this call's or the stored record's
    margins_seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


class Pool:
    def __init__(self, cfg: UnlearnConfig, data: ImageData, split: ForgetSplit, store: ReferenceStore, *, models: int):
        assert models >= 3, "a pool needs N >= 3 (U-LiRA leaves a pair out and fits a variance to the rest)"
        self.cfg, self.data, self.split, self.store, self.models = cfg, data, split, store, models

    # ---- which models ------------------------------------------------------------------------------------
    def originals(self) -> list[Job]:
        return [Job(ORIGINAL, m) for m in range(self.models)]

    def oracles(self) -> list[Job]:
        return [Job(RETRAIN, m) for m in range(self.models)]

    def heldout(self) -> list[Job]:
        """Exact retraining's models: Retrain seeds N..2N-1, pair m = seed N + m."""
        return [Job(RETRAIN, self.models + m) for m in range(self.models)]

    def unlearned(self, method: UnlearnConfig) -> list[Job]:
        return [Job(UNLEARNED, m, method_key(method)) for m in range(self.models)]

    def jobs(self, methods: list[UnlearnConfig] = ()) -> list[Job]:
        """Every model an audit of `methods` needs; originals first (the unlearned models start from them)."""
        out = self.originals() + self.oracles() + self.heldout()
        for method in methods:
            out += self.unlearned(method)
        return out

    def run_seed(self, job: Job) -> int:
        """The seed the method of an unlearned job runs with: pair m's, m, except for Retrain, which trains
        from scratch and ignores the original: its seed-m model would be oracle m itself, the very model it is
        judged against (KLOM 0, U-LiRA AUC 0.5 by construction). It takes seed N + m, exact retraining's
        held-out seed, so a "Retrain (re-run)" row is judged as exact retraining is."""
        return job.seed + (self.models if job.method["method"] == Retrain.name else 0)

    # ---- the store's keys --------------------------------------------------------------------------------
    def inputs(self, job: Job) -> dict[str, Any] | None:
        """The model entry's inputs; None for an unlearned model whose original is not in the store yet."""
        if job.role != UNLEARNED:
            return reference_inputs(self.cfg, self.data, self.split, job.role, job.seed)
        original = self.store.record(self.inputs(Job(ORIGINAL, job.seed)))
        if original is None:
            return None
        return {"format": MARGINS_FORMAT, "role": UNLEARNED, "original_sha256": original["sha256"],
                "config": {k: v for k, v in job.method.items() if k not in NOT_WEIGHTS}, "seed": self.run_seed(job),
                "data": self.data.fingerprint, "forget_idx": tensor_digest(self.split.forget_idx),
                "train_labels": tensor_digest(self.split.train_labels)}

    def margins_inputs(self, sha256: str) -> dict[str, Any]:
        return {"format": MARGINS_FORMAT, "role": "margins", "model_sha256": sha256, "model": self.cfg.model,
                "data": self.data.fingerprint, "train_labels": tensor_digest(self.split.train_labels),
                "batch_size": MARGIN_BATCH}

    def cached(self, job: Job) -> dict[str, Any] | None:
        """The stored record of the job's model, if it has one and its margins; trains and downloads nothing."""
        inputs = self.inputs(job)
        record = self.store.record(inputs) if inputs is not None else None
        if record is None or self.store.record(self.margins_inputs(record["sha256"])) is None:
            return None
        return record

    # ---- running a job -----------------------------------------------------------------------------------
    def run(self, job: Job, *, device: torch.device | str) -> Done:
        """The job's model and its margins, each trained or computed only if no process has stored it."""
        device = torch.device(device)
        data = self.data.to(device)
        if job.role == UNLEARNED:
            self.run(Job(ORIGINAL, job.seed), device=device)   # a no-op once the original is stored
        inputs = self.inputs(job)
        found = self.store.find(inputs)
        entry = found or self.store.entry(inputs, self.trainer(job, data, device), about={"device": str(device)})
        # Trained here, not by another process that held the lock first: the record names its trainer.
        trained = found is None and entry.record.get("pid") == os.getpid() and \
            entry.record.get("host") == socket.gethostname()
        margins_inputs = self.margins_inputs(entry.sha256)
        started = time.perf_counter()
        margins = self.store.entry(margins_inputs, lambda: {"phi": torch.from_numpy(model_margins(
            self.load(job, entry.path, data, device), data, self.split, batch_size=MARGIN_BATCH))},
            about={"device": str(device)})
        return Done(job, entry.sha256, margins.sha256, trained, float(entry.record.get("train_seconds", 0.0)),
                    time.perf_counter() - started)

    def trainer(self, job: Job, data: ImageData, device: torch.device):
        if job.role != UNLEARNED:
            return reference_trainer(self.cfg, data, self.split, job.role, job.seed, device)

        def train() -> dict[str, torch.Tensor]:
            from mixunlearn.methods import build_method

            original_entry = self.store.find(self.inputs(Job(ORIGINAL, job.seed)))
            original = load_frozen(fresh_model(self.cfg, data, job.seed), original_entry.path, device)
            cfg = UnlearnConfig.from_dict({**job.method, "seed": self.run_seed(job)})
            loop = build_method(cfg, data, self.split, original=original, device=device)
            while loop.epoch < loop.epochs:
                loop.train_epoch()   # Diverged propagates: a pool of a diverging config is no pool
            return {k: v.detach().to("cpu", memory_format=torch.contiguous_format)
                    for k, v in loop.model.state_dict().items()}
        return train

    def load(self, job: Job, path, data: ImageData, device: torch.device) -> torch.nn.Module:
        return load_frozen(fresh_model(self.cfg, data, job.seed), path, device)

    # ---- reading the margins -----------------------------------------------------------------------------
    def margins(self, jobs: list[Job]) -> np.ndarray:
        """float32 [len(jobs), n_train + n_test]: each job's stored margins (each job must have run)."""
        rows = []
        for job in jobs:
            model = self.store.find(self.inputs(job))
            assert model is not None, f"{job.label()} is not in the store; run it first"
            entry = self.store.find(self.margins_inputs(model.sha256))
            assert entry is not None, f"{job.label()}'s margins are not in the store; run it first"
            rows.append(torch.load(entry.path, map_location="cpu", weights_only=True)["phi"].numpy())
        return np.stack(rows)

    def trained_seconds(self, job: Job) -> float | None:
        """The stored training time of the job's model (None if not stored): what a dry run's estimate reads."""
        inputs = self.inputs(job)
        record = self.store.record(inputs) if inputs is not None else None
        return None if record is None else float(record.get("train_seconds", 0.0))


def method_key(method: UnlearnConfig) -> dict[str, Any]:
    """The method config a pool's unlearned models are keyed by: its dict, seed 0 (each model sets its own)."""
    return {**method.to_dict(), "seed": 0}
