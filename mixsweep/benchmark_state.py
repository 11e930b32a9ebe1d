"""A benchmark on disk: its settings, its MLflow run, and where each method's sweep and seed runs live.

    <storage>/<bench>/benchmark.json              this module's BenchmarkState
    <storage>/<bench>/spaces/<method>.yaml        the space each method's sweep runs (plan base, budget, objective)
    <storage>/<bench>/<bench>.<method>/           that sweep (a plain sweep folder: mixsweep.json, optuna.db, Tune's)
    <storage>/<bench>/<bench>.<method>.seeds-0-1/ the Tune experiment of the best config's seed runs 0 and 1
    <storage>/<bench>/logs/<method>.log           what the method's process printed
    <storage>/<bench>/table.md|csv|tex            the table; report/ holds `mixsweep report`'s figures

The sweeps are named `<bench>.<method>` so that, with a URI storage (whose local files go to
./sweeps/<name>), two benchmarks' sweeps of one method never share a folder. Light on purpose: the CLI
reads it before any heavy import.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import state as sweep_state
from .errors import UsageError

STATE_FILE = "benchmark.json"


@dataclass
class BenchmarkState:
    name: str
    storage: str                  # the --storage the benchmark was started with (absolute folder or URI)
    plan_file: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str            # the benchmark's MLflow run: each method's sweep run nests under it
    methods: list[str]            # plan order
    titles: dict[str, str]        # method -> the paper's spelling (the table's rows)
    seeds: list[int]
    objective: list[str]          # [metric, mode]
    budget: dict[str, int]        # trials, concurrency, grace_epochs
    identity: dict[str, Any]      # BenchmarkPlan.identity(): what a continuation must not change
    cpus_per_trial: float
    gpus_per_trial: float
    address: str | None
    references: str               # the one reference store every method's trials share
    cache_dir: str | None = None
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return sweep_state.local_dir(self.storage, self.name)

    @property
    def method_storage(self) -> str:
        """The storage of the method sweeps and seed experiments: the benchmark's own folder (or URI)."""
        return f"{self.storage.rstrip('/')}/{self.name}"

    def sweep_name(self, method: str) -> str:
        return f"{self.name}.{method}"

    def space_path(self, method: str) -> Path:
        return self.folder / "spaces" / f"{method}.yaml"

    def save(self) -> Path:
        path = self.folder / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


def find(name: str, storage_flag: str | None) -> Path | None:
    """The benchmark.json of `name` under the storage, or in the folder `name`; None when neither exists."""
    for folder in (Path(name).expanduser(), sweep_state.local_dir(sweep_state.resolve_storage(storage_flag), name)):
        if (folder / STATE_FILE).is_file():
            return folder / STATE_FILE
    return None


def load(name: str, storage_flag: str | None) -> BenchmarkState:
    path = find(name, storage_flag)
    if path is None:
        raise UsageError(f"benchmark {name!r}: no {STATE_FILE} under --storage "
                         f"({sweep_state.resolve_storage(storage_flag)}); pass its name and --storage")
    return load_file(path)


def load_file(path: Path) -> BenchmarkState:
    return BenchmarkState(**json.loads(path.read_text()))


def resolve_plan(value: str) -> Path:
    """A benchmark plan file, or the name of a shipped one (search_spaces/benchmarks/<name>.yaml)."""
    from search_spaces import benchmark_path, list_benchmarks

    path = Path(value).expanduser()
    if path.is_file():
        return path.resolve()
    if value.removesuffix(".yaml") in list_benchmarks():
        return benchmark_path(value)
    raise UsageError(f"{value}: no such benchmark plan; pass a plan YAML or a shipped plan "
                     f"({', '.join(list_benchmarks())})")
