"""A sweep on disk: where Tune's results are, and the settings `resume` and `export` need again.

    <storage>/<name>/                Tune's experiment folder (trials, checkpoints, tuner.pkl)
    <storage>/<name>/mixsweep.json   this module's SweepState: settings, MLflow parent run, objectives
    <storage>/<name>/optuna.db       the Optuna study (study name = sweep name): optuna-dashboard reads it
    <storage>/<name>/export/         `mixsweep export`: best config(s) and trials.parquet
    <storage>/references/            f_D and Retrain, shared by every sweep and node (--references moves it)

With a URI storage (s3://, gs://: Tune's results on a cluster), the three local files live in
./sweeps/<name>/ on the machine that runs `mixsweep` instead.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import UsageError

STATE_FILE = "mixsweep.json"
DEFAULT_STORAGE = "sweeps"    # relative to the working directory; $MIXSWEEP_STORAGE or --storage moves it
LOCAL_STATE_ROOT = "sweeps"   # where a URI storage's local files go


@dataclass
class SweepState:
    name: str
    storage: str                  # absolute folder or URI: Tune's storage_path
    space_file: str               # absolute path of the space YAML the sweep was started from
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    trials: int
    concurrency: int
    cpus_per_trial: float
    gpus_per_trial: float
    checkpoint_every: int
    address: str | None
    seed: int                     # the Optuna sampler's seed
    objectives: list[list[str]] = field(default_factory=list)   # [[metric, mode], ...] as in the space
    scheduler: str = "asha"       # "asha" (one objective) or "fifo" (a Pareto search)
    epochs_override: int | None = None
    cache_dir: str | None = None
    references: str | None = None  # the shared reference store (resolve_references); None = each node's cache
    attack_epochs: list[int] | None = None   # ASHA's rungs: where trials run the CPU attackers (None: every epoch)
    curve_budget: float | None = None   # the accuracies between the rungs (CurveBudget); None: every epoch
    nested_under: str | None = None     # the MLflow run above the parent run (a benchmark's), or None

    @property
    def experiment_path(self) -> str:
        """Tune's experiment folder (or URI): what Tuner.restore and ExperimentAnalysis take."""
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def local_dir(self) -> Path:
        return local_dir(self.storage, self.name)

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.local_dir / 'optuna.db'}"

    @property
    def export_dir(self) -> Path:
        return self.local_dir / "export"

    @property
    def threads(self) -> int:
        """torch threads each trial ran with (= its CPUs): what an exact CPU re-run needs."""
        return max(1, int(self.cpus_per_trial))

    def save(self) -> Path:
        path = self.local_dir / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


def is_uri(storage: str) -> bool:
    return "://" in storage


def resolve_storage(flag: str | None) -> str:
    """--storage, else $MIXSWEEP_STORAGE, else ./sweeps; a folder is made absolute (trials run elsewhere)."""
    storage = flag or os.environ.get("MIXSWEEP_STORAGE") or DEFAULT_STORAGE
    return storage if is_uri(storage) else str(Path(storage).expanduser().resolve())


def resolve_references(flag: str | None, storage: str) -> str:
    """--references, else $MIXSWEEP_REFERENCES, else <storage>/references: where a sweep's trials share
    f_D and Retrain (every node must reach it; a folder is made absolute)."""
    references = flag or os.environ.get("MIXSWEEP_REFERENCES") or f"{storage.rstrip('/')}/references"
    return references if is_uri(references) else str(Path(references).expanduser().resolve())


def local_dir(storage: str, name: str) -> Path:
    return Path(LOCAL_STATE_ROOT).resolve() / name if is_uri(storage) else Path(storage) / name


def load(sweep: str, storage_flag: str | None) -> SweepState:
    """The sweep named `sweep` under the storage, or the sweep folder at the path `sweep`."""
    candidates = [Path(sweep).expanduser(), local_dir(resolve_storage(storage_flag), sweep)]
    for folder in candidates:
        path = folder / STATE_FILE
        if path.is_file():
            return SweepState(**json.loads(path.read_text()))
    raise UsageError(f"sweep {sweep!r}: no {STATE_FILE} in {candidates[1]} or ./{sweep}; pass a sweep name "
                     "under --storage (or $MIXSWEEP_STORAGE) or the path of a sweep folder")
