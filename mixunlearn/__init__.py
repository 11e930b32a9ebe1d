"""MixUnlearn (Adversarial Mixup Unlearning, ICLR 2025) in plain PyTorch.

No Ray, Optuna or MLflow here: the method runs from a script or a notebook.

    from mixunlearn import UnlearnConfig, run
    print(run(UnlearnConfig(dataset="fashion_mnist", task="class", forget_class=0)).table())

The names below are imported on first use (PEP 562): `from mixunlearn.config import ConfigError`, which
the `mixsweep` command needs to report a bad file, must not pay for importing torch (~1.5 s).
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# Public name -> the submodule that defines it.
_EXPORTS = {
    "ConfigError": "config", "UnlearnConfig": "config",
    "DatasetNotFound": "data", "ImageData": "data", "load_data": "data", "load_dataset": "data",
    "contrastive": "losses", "generator_loss": "losses", "make_targets": "losses", "mix_loss": "losses",
    "real_loss": "losses", "sharpen": "losses", "sim_loss": "losses",
    "ATTACKER": "metrics", "avg_gap": "metrics", "evaluate": "metrics",
    "MixBlock": "mixblock",
    "build_model": "models",
    "References": "reference", "reference_models": "reference",
    "Prepared": "run", "RunResult": "run", "epochs": "run", "format_table": "table", "prepare": "run", "run": "run",
    "ForgetSplit": "tasks", "TaskSpecError": "tasks", "make_split": "tasks",
    "MixUnlearn": "methods.mixunlearn",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mixunlearn' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value   # the next lookup is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # Importing the submodule run.py binds it as `mixunlearn.run`; the public `run` is its function, as
        # it was when this file imported everything eagerly.
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
