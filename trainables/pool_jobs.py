"""An audit's model pool as Ray work: one task per model, anywhere on the cluster.

    ref = pool_job.options(num_cpus=1, num_gpus=0.25).remote(settings, job)   # -> mixunlearn.judge.pool.Done
    ref = pool_job.options(...).remote(settings, unlearned_job, original_ref)  # runs once its original ran

A task trains (or finds) one model of the pool in the reference store every node shares, under the store's
cluster-wide lease lock (trainables/lease.py), then its margins; both are committed to the store before
the task returns, so a killed audit keeps every model a task finished. The data, the split and the pool
object are built once per worker process and reused by its later tasks.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import ray


@dataclass(frozen=True)
class PoolSettings:
    """What every task of one audit shares."""
    config: dict[str, Any]     # the audit's UnlearnConfig.to_dict(): data, task, model, recipe
    models: int                # N
    cache_dir: str | None      # each node's cache; None = $MIXSWEEP_CACHE or ~/.cache/mixsweep
    references: str | None     # the store every node shares (folder or URI); None = each node's cache alone
    cpus: float                # torch threads = int(cpus)
    gpus: float                # > 0: the task trains on its CUDA device


_POOLS: dict[str, Any] = {}   # per worker process: the settings' JSON -> its Pool


def worker_pool(settings: PoolSettings):
    """The Pool of `settings`, built once per worker process (data decoded, split drawn)."""
    key = json.dumps(asdict(settings), sort_keys=True)
    if key not in _POOLS:
        from mixunlearn.config import UnlearnConfig
        from mixunlearn.data import load_data
        from mixunlearn.judge.pool import Pool
        from mixunlearn.tasks import make_split

        from .references import trial_store

        cfg = UnlearnConfig.from_dict(settings.config)
        data = load_data(cfg)
        store = trial_store(settings.cache_dir, settings.references, cluster=settings.references is not None)
        _POOLS.clear()
        _POOLS[key] = Pool(cfg, data, make_split(cfg, data), store, models=settings.models)
    return _POOLS[key]


def run_job(settings: PoolSettings, job, *after: Any):
    """Train or find `job`'s model and its margins; `after`: results this job waits for (its original)."""
    import torch

    from mixunlearn.run import deterministic_kernels

    torch.set_num_threads(max(1, int(settings.cpus)))
    device = torch.device("cuda") if settings.gpus > 0 and torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cpu":
        deterministic_kernels()
    return worker_pool(settings).run(job, device=device)


pool_job = ray.remote(max_retries=1)(run_job)
