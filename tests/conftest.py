"""Shared fixtures: a real MLflow tracking server, started by the launcher the cluster head uses."""
import importlib.util
import socket
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# One torch thread in the test process: the small CPU models here run faster single-threaded on two
# shared cores (two threads contend with Ray's and MLflow's processes), and float32 CPU results are
# reproducible only at a fixed thread count.
torch.set_num_threads(1)


def load_mlflow_launcher():
    """platform/mlflow/server.py, loaded by path: platform/ is a plain folder, never a package
    (a package named `platform` would shadow the standard-library module)."""
    spec = importlib.util.spec_from_file_location("mixsweep_mlflow_launcher",
                                                  ROOT / "platform" / "mlflow" / "server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_launcher():
    return load_mlflow_launcher()


@pytest.fixture(scope="session")
def mlflow_server(mlflow_launcher, tmp_path_factory):
    """Tracking URI (http://127.0.0.1:PORT) of one server for the whole session: SQLite store and
    proxied artifacts in a temporary directory, stopped (its whole process group) at the end."""
    state_dir = tmp_path_factory.mktemp("mlflow-server")
    server = mlflow_launcher.start(state_dir, port=free_port())
    try:
        yield server["url"]
    finally:
        mlflow_launcher.stop(state_dir)
