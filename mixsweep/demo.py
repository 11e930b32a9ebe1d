"""`mixsweep demo`: the embedded default, end to end on a laptop's CPU.

    mixsweep demo        # ~10 minutes on 2 cores

The `quick` preset (Fashion-MNIST subset, cnn_small, forget class 0, label-agnostic) as an 8-trial
sweep with a local Ray, a local SQLite MLflow store (./mlflow.db) and Tune results in ./sweeps; then
the export, the best config, and the commands that open the MLflow UI (on the sweep's runs) and
optuna-dashboard, and that register the best model.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from search_spaces import load_space, preset_path

from . import state as sweep_state
from .export import export_sweep
from .sweep import run_sweep
from .ui import ui_hint

PRESET = "quick"
TRIALS = 8            # the paper defaults + 7 TPE suggestions
CONCURRENCY = 2       # one trial per core of a 2-core machine


def free_name(storage: str, stem: str) -> str:
    """`stem`, or stem-2, stem-3, ... if an earlier demo used it: a demo never refuses to start."""
    name, n = stem, 1
    while (sweep_state.local_dir(storage, name) / sweep_state.STATE_FILE).exists() or \
            (sweep_state.local_dir(storage, name) / "tuner.pkl").exists():
        n += 1
        name = f"{stem}-{n}"
    return name


def demo(*, trials: int = TRIALS, concurrency: int = CONCURRENCY, storage: str | None = None,
         tracking_uri: str | None = None) -> int:
    storage_path = sweep_state.resolve_storage(storage)
    uri = tracking_uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    state = run_sweep(preset_path(PRESET), trials=trials, concurrency=concurrency, cpus_per_trial=1,
                      gpus_per_trial=0, address="local", storage=storage_path, tracking_uri=uri,
                      name=free_name(storage_path, f"{PRESET}-demo"))
    exported = export_sweep(state.name, storage=storage_path)
    best = exported.configs[0]
    header = [line for line in best.read_text().splitlines() if line.startswith("# ")]
    searched = load_space(preset_path(PRESET)).search
    config = yaml.safe_load(best.read_text())
    print("\nBest config " + header[0].removeprefix("# Best trial of sweep "))
    for name in searched:
        print(f"  {name}: {config[name]:.4g}" if isinstance(config[name], float) else f"  {name}: {config[name]}")
    print(f"  (every other field: the quick preset's; the whole config is {best})")
    print(f"Export: {exported.folder} (best.yaml, trials.parquet; also on the sweep's MLflow parent run)")
    flag = f" --storage {storage_path}" if storage else ""
    print(f"Re-run the best config:  mixsweep train {best}")
    print(f"Open the MLflow UI:      {ui_hint(state.tracking_uri, state.experiment_id)}")
    print(f"Browse the Optuna study: mixsweep ui --optuna {state.name}{flag}")
    print(f"Register the best model: mixsweep export {state.name}{flag} --register NAME")
    return 0
