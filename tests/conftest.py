"""Shared fixtures: a real MLflow tracking server, started by the launcher the cluster head uses, and a
real PostgreSQL for the tests of a cluster's store."""
import importlib.util
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# One torch thread in the test process: the small CPU models here run faster single-threaded on two
# shared cores (two threads contend with Ray's and MLflow's processes), and float32 CPU results are
# reproducible only at a fixed thread count.
torch.set_num_threads(1)


POSTGRES_ENV = "MIXSWEEP_TEST_POSTGRES_URI"   # a running PostgreSQL's URI (.ci/run starts one)


def load_platform_module(name: str):
    """platform/mlflow/NAME.py, loaded by path: platform/ is a plain folder, never a package
    (a package named `platform` would shadow the standard-library module)."""
    spec = importlib.util.spec_from_file_location(f"mixsweep_mlflow_{name}",
                                                  ROOT / "platform" / "mlflow" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_mlflow_launcher():
    return load_platform_module("server")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_launcher():
    return load_mlflow_launcher()


@pytest.fixture(scope="session")
def mlflow_server_state(tmp_path_factory) -> Path:
    """The state directory of the session's server: its SQLite store is STATE/mlflow.db."""
    return tmp_path_factory.mktemp("mlflow-server")


@pytest.fixture(scope="session")
def mlflow_server(mlflow_launcher, mlflow_server_state):
    """Tracking URI (http://127.0.0.1:PORT) of one server for the whole session: SQLite store and
    proxied artifacts in a temporary directory, stopped (its whole process group) at the end."""
    server = mlflow_launcher.start(mlflow_server_state, port=free_port())
    try:
        yield server["url"]
    finally:
        mlflow_launcher.stop(mlflow_server_state)


@pytest.fixture(scope="session")
def postgres_server():
    """URI of a real PostgreSQL whose user may create databases: $MIXSWEEP_TEST_POSTGRES_URI when set
    (.ci/run starts one, as a head node does), else a private one started here with
    platform/mlflow/postgres.py (initdb in a /tmp folder, a free port on 127.0.0.1; as root it runs as
    the `postgres` user) and stopped at the end."""
    if os.environ.get(POSTGRES_ENV):
        yield os.environ[POSTGRES_ENV]
        return
    postgres = load_platform_module("postgres")
    if postgres.bin_dir() is None:
        pytest.skip("no PostgreSQL installed (initdb on PATH or /usr/lib/postgresql/*/bin): "
                    "apt-get install postgresql, or set MIXSWEEP_TEST_POSTGRES_URI")
    state_dir = Path(tempfile.mkdtemp(prefix="mxs-pg-", dir="/tmp"))
    try:
        yield postgres.start(state_dir, port=free_port())
    finally:
        postgres.stop(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def postgres_store(postgres_server):
    """A postgresql:// store URI naming a database of its own that does not exist yet."""
    return postgres_server.rsplit("/", 1)[0] + f"/test_{uuid.uuid4().hex[:12]}"
