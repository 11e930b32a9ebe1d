"""`--register` against whatever store the records are in: a SQLite file that is not ./mlflow.db (a
sweep's export and an ablation), and an MLflow server on PostgreSQL. The session's SQLite-backed server
is test_registry.py's.

MLflow 3.17's SQL registry looked a `models:/<id>` source up through the process-wide tracking URI, so
every case here answered "Logged model with ID ... not found; pick another name" before the fix. The
commands run in this process (on the module's Ray, to spare the suite a Ray start each) with the
process-wide URI pointed at an unrelated store, as a fresh `mixsweep` process run from another folder
would have it (./mlflow.db).
"""
from __future__ import annotations

import socket

import mlflow
import mlflow.pytorch
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from conftest import RECORDED_SPACE
from mixsweep import state as sweep_state
from mixsweep.cli import main
from mixsweep.registry import logged_model, register_run
from mixunlearn.models import build_model
from trainables import records

pytestmark = pytest.mark.slow

TINY = {**RECORDED_SPACE["base"], "epochs": 1}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def elsewhere(tmp_path):
    """A SQLite store in a folder of its own; the process-wide tracking URI elsewhere for the test."""
    (tmp_path / "store").mkdir()
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield f"sqlite:///{tmp_path / 'store' / 'm.db'}", tmp_path
    mlflow.set_tracking_uri(before)


@pytest.fixture
def global_uri_restored():
    before = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(before)


def loads(uri: str, name: str, alias: str) -> torch.nn.Module:
    mlflow.set_tracking_uri(uri)
    return mlflow.pytorch.load_model(f"models:/{name}@{alias}")


def test_export_registers_a_sweep_recorded_in_a_sqlite_file_elsewhere(local_ray, elsewhere, capsys):
    uri, work = elsewhere
    space = work / "tiny.yaml"
    space.write_text(yaml.safe_dump({**RECORDED_SPACE, "base": TINY, "sweep": {"trials": 2, "concurrency": 2,
                                                                               "grace_epochs": 1}}))
    storage = str(work / "sweeps")
    assert main(["run", str(space), "--storage", storage, "--tracking-uri", uri, "--name", "elsewhere"]) == 0
    capsys.readouterr()
    assert main(["export", "elsewhere", "--storage", storage, "--register", "tiny-elsewhere"]) == 0
    assert f"mlflow.set_tracking_uri('{uri}')" in capsys.readouterr().out   # the store models:/ resolves in
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("tiny-elsewhere", "best")
    state = sweep_state.load("elsewhere", storage)
    run = client.get_run(version.run_id)
    assert run.data.tags["mlflow.parentRunId"] == state.parent_run_id
    model = logged_model(client, run)
    assert (version.source, version.tags["mixsweep.model_id"]) == (model.artifact_location, model.model_id)
    assert isinstance(loads(uri, "tiny-elsewhere", "best"), torch.nn.Module)


def test_ablate_registers_each_variant_from_a_sqlite_file_elsewhere(local_ray, elsewhere, capsys):
    uri, work = elsewhere
    plan = work / "plan.yaml"
    plan.write_text(yaml.safe_dump({"base": TINY, "seeds": [0], "metrics": ["avg_gap"],
                                    "variants": {"full": {}, "no_real": {"omega": 0.0}}}))
    assert main(["ablate", str(plan), "--storage", str(work / "sweeps"), "--tracking-uri", uri,
                 "--register", "tiny-variants", "--name", "variants"]) == 0
    assert capsys.readouterr().out.count("registered: models:/tiny-variants@") == 2
    client = MlflowClient(uri)
    for alias in ("full", "no_real"):
        version = client.get_model_version_by_alias("tiny-variants", alias)
        assert client.get_run(version.run_id).data.tags["mixsweep.variant"] == alias
        assert isinstance(loads(uri, "tiny-variants", alias), torch.nn.Module)


def test_a_run_on_a_postgresql_server_registers_and_loads(mlflow_launcher, postgres_store, tmp_path,
                                                          global_uri_restored):
    server = mlflow_launcher.start(tmp_path / "server", port=free_port(), backend_store_uri=postgres_store)
    try:
        uri = server["url"]
        client = MlflowClient(uri)
        experiment_id = client.create_experiment("registry-on-postgres")
        run_id = records.open_run(client, experiment_id=experiment_id, run_name="one-model", kind="train", params={})
        torch.manual_seed(0)
        model = build_model("cnn_small", num_classes=10, in_channels=1, image_size=28).eval()
        records.log_pytorch_model(uri, run_id, model, torch.zeros(2, 1, 28, 28))
        records.close_run(client, run_id, "FINISHED")
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'unrelated.db'}")   # what the process points at is moot
        registered = register_run(client, "on-postgres", run_id=run_id, alias="best", config={"epochs": 1},
                                  metrics={"avg_gap": 1.5}, sweep="none")
        version = client.get_model_version_by_alias("on-postgres", "best")
        assert (version.version, version.run_id) == (registered.version, run_id)
        assert version.tags["metric.avg_gap"] == "1.5"
        images = torch.randn(3, 1, 28, 28)
        with torch.no_grad():
            torch.testing.assert_close(loads(uri, "on-postgres", "best")(images), model(images))
    finally:
        mlflow_launcher.stop(tmp_path / "server")


def test_a_refusal_names_its_cause(recorded_sweep, mlflow_server, capsys):
    """A name MLflow cannot hold is the name's fault; a run whose model is gone is not."""
    from mixsweep.errors import UsageError

    state, _ = recorded_sweep
    client = MlflowClient(mlflow_server)
    run = next(r for r in client.search_runs([state.experiment_id],
                                              records.trial_runs_of(state.parent_run_id)))
    with pytest.raises(UsageError, match=r"refused the name .*'/'.*; pick another name"):
        register_run(client, "bad/name", run_id=run.info.run_id, alias="best", config={}, metrics={}, sweep="x")
    with pytest.raises(UsageError, match=r"has no logged model"):
        register_run(client, "fine-name", run_id=state.parent_run_id, alias="best", config={}, metrics={}, sweep="x")
