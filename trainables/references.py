"""Reference models on a cluster: the store every trial reads, and the provenance tags every run records.

    store = trial_store(settings.cache_dir, settings.references)   # in a trial
    prepare(cfg, device=device, store=store)
    client.log_batch(run_id, tags=provenance_tags(prepared.references))

A trial that misses an entry in the shared store trains it under its key's cluster-wide lease lock
(trainables/lease.py), so one process of the whole cluster trains each reference model.
The tags' names load no torch (the driver's export and compare read them); the store loads it when built.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.entities import RunTag

from .lease import LeaseLock

if TYPE_CHECKING:
    from mixunlearn.reference import References
    from mixunlearn.reference_store import ReferenceStore

ORIGINAL_SHA256_TAG = "mixsweep.reference.original_sha256"   # state_sha256 of the f_D a run was judged by
RETRAIN_SHA256_TAG = "mixsweep.reference.retrain_sha256"     # ... and of its Retrain


def provenance_tags(references: References) -> list[RunTag]:
    return [RunTag(ORIGINAL_SHA256_TAG, references.original_sha256),
            RunTag(RETRAIN_SHA256_TAG, references.retrain_sha256)]


def trial_store(cache_dir: str | None, references: str | None, *, cluster: bool = True) -> ReferenceStore:
    """A trial's store: this node's cache folder, read through the sweep's shared store under the cluster
    lock; the local folder alone (and its flock) when the sweep has no shared store. `cluster=False`
    (a `mixsweep train` run, no Ray): the shared store under the local flock."""
    from mixunlearn.data import default_cache_dir
    from mixunlearn.reference_store import ReferenceStore

    local = Path(cache_dir or default_cache_dir()) / "references"
    if references is None:
        return ReferenceStore(local)
    return ReferenceStore(local, references, lock=LeaseLock() if cluster else None)
