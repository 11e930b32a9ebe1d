"""Fixtures of the platform tests: a real local Ray in its own temp dir, tiny real data, space files.

The MLflow server is the session's `mlflow_server` (tests/conftest.py). Ray gets a short temp dir of its
own (unix socket paths have a length limit) and RAY_AUTH_MODE=disabled explicitly; the tests shut down
only the Ray they started and never run the CLI's stop command, which would end every Ray process on the machine.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import ray
import yaml

# Fashion-MNIST (the Debian package: real images, no download), shrunk so a 3-epoch trial takes seconds
# on one core: 40 training images per class (400 in D, 40 in D_f), 20 test images per class.
TINY_REAL_BASE = {
    "dataset": "fashion_mnist", "train_subset": 40, "test_subset": 20, "task": "class", "forget_class": 0,
    "model": "cnn_small", "ref_epochs": 3, "epochs": 3, "batch_size": 16, "mia_samples": 100,
    "eval_batch_size": 512, "attack_draws": 1,   # one attacker draw: these tests judge the platform, not the attacks
}
TINY_SEARCH = {"alpha": {"low": 0.1, "high": 4.0, "log": True},
               "lr_unlearner": {"low": 1.0e-5, "high": 1.0e-3, "log": True},
               "omega": {"low": 0.5, "high": 2.0}}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One reference-model and data cache for the session, in the environment before any Ray starts (its
    workers inherit the driver's environment): f_D and Retrain train once, every trial loads them."""
    path = tmp_path_factory.mktemp("mixsweep-cache")
    os.environ["MIXSWEEP_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def short_tmp() -> Path:
    """A short folder under /tmp for Ray's sockets (pytest's tmp paths are too long for them)."""
    path = Path(tempfile.mkdtemp(prefix="mxs-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def local_ray(cache_dir, short_tmp):
    """A 2-CPU local Ray for in-process sweeps (`mixsweep` reuses an initialised Ray)."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    temp_dir = tempfile.mkdtemp(prefix="r", dir=short_tmp)
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, _temp_dir=temp_dir, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture
def cli_env(cache_dir, short_tmp) -> dict[str, str]:
    """The environment of a `mixsweep` subprocess: its own Ray temp dir, the session cache."""
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "MIXSWEEP_CACHE": str(cache_dir),
            "RAY_TMPDIR": tempfile.mkdtemp(prefix="c", dir=short_tmp), "PYTHONUNBUFFERED": "1"}


def write_space(path: Path, *, base: dict | None = None, search: dict | None = None, **sections) -> Path:
    document = {"base": base or TINY_REAL_BASE, "search": search or TINY_SEARCH, **sections}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def space_writer():
    """write_space(path, base=..., search=..., sweep=...): a sweep space YAML over tiny real data."""
    return write_space


# A sweep as a user browses it afterwards (the UI, optuna-dashboard, the registry): `mixsweep run` in its
# own process on the built-in synthetic set, 3 trials of 2 epochs, logging to the session's MLflow server.
RECORDED = "recorded"
RECORDED_SPACE = {
    "base": {"dataset": "tiny", "task": "class", "forget_class": 0, "model": "cnn_small", "ref_epochs": 1,
             "epochs": 2, "batch_size": 16, "mia_samples": 100, "eval_batch_size": 512, "attack_draws": 1},
    "search": {"alpha": {"low": 0.1, "high": 4.0, "log": True}, "omega": {"low": 0.5, "high": 2.0},
               "lr_unlearner": {"low": 1.0e-5, "high": 1.0e-3, "log": True}},
    "objectives": [{"metric": "avg_gap", "mode": "min"}],
    "sweep": {"trials": 3, "concurrency": 2, "grace_epochs": 1},
}


@pytest.fixture(scope="session")
def recorded_sweep(mlflow_server, cache_dir, short_tmp, tmp_path_factory):
    """(the sweep's SweepState, what `mixsweep run` printed), for every test module that browses it."""
    import subprocess
    import sys

    from mixsweep import state as sweep_state

    folder = tmp_path_factory.mktemp("recorded")
    space = folder / "tiny.yaml"
    space.write_text(yaml.safe_dump(RECORDED_SPACE, sort_keys=False))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "MIXSWEEP_CACHE": str(cache_dir),
           "RAY_TMPDIR": tempfile.mkdtemp(prefix="s", dir=short_tmp), "PYTHONUNBUFFERED": "1", "COLUMNS": "80"}
    done = subprocess.run([sys.executable, "-m", "mixsweep", "run", str(space), "--storage", str(folder / "sweeps"),
                           "--tracking-uri", mlflow_server, "--name", RECORDED],
                          env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return sweep_state.load(RECORDED, str(folder / "sweeps")), output
