"""`mixsweep export SWEEP --register NAME`: the best trial's model as a registry version with an alias,
against the session's real MLflow server; the loaded model scores the logged forget-set accuracy."""
from __future__ import annotations

import json

import mlflow
import mlflow.pytorch
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from mixsweep.cli import main
from mixsweep.registry import REFERENCE_PREFIX, alias_of, logged_model, register_rows
from mixunlearn.config import UnlearnConfig
from mixunlearn.data import load_data
from mixunlearn.tasks import make_split
from trainables import records

NAME = "recorded-best"


@pytest.fixture(scope="module")
def registered(recorded_sweep, mlflow_server):
    """Two exports of the recorded sweep: --register NAME (alias best), then --alias tuned; what they printed."""
    state, _ = recorded_sweep
    printed = []
    for extra in ([], ["--alias", "tuned"]):
        from io import StringIO
        from contextlib import redirect_stdout

        out = StringIO()
        with redirect_stdout(out):
            assert main(["export", state.name, "--storage", state.storage, "--register", NAME, *extra]) == 0
        printed.append(out.getvalue())
    return state, MlflowClient(mlflow_server), printed


def best_row(state) -> dict:
    rows = pq.read_table(state.export_dir / "trials.parquet").to_pylist()
    header = (state.export_dir / "best.yaml").read_text().splitlines()[0]
    return next(r for r in rows if f"trial {r['trial_id']}," in header)


def test_the_version_carries_the_config_the_metrics_and_the_references(registered):
    state, client, printed = registered
    assert f"registered: models:/{NAME}@best  (version 1," in printed[0]
    version = client.get_model_version_by_alias(NAME, "best")
    best = best_row(state)
    assert version.run_id == best["mlflow_run_id"]
    exported = yaml.safe_load((state.export_dir / "best.yaml").read_text())
    assert json.loads(version.tags["mixsweep.config"]) == exported
    assert yaml.safe_load(version.description) == exported   # the header lines are YAML comments
    for metric in ("avg_gap", "train_f", "ta", "test_r"):
        assert float(version.tags[f"metric.{metric}"]) == best[metric]
    run = client.get_run(best["mlflow_run_id"])
    assert version.tags["mixsweep.trial_id"] == best["trial_id"]
    assert version.tags["mixsweep.model_epoch"] == run.data.tags["mixsweep.model_epoch"]
    references = {k: v for k, v in run.data.tags.items() if k.startswith(REFERENCE_PREFIX)}
    assert {k: v for k, v in version.tags.items() if k.startswith(REFERENCE_PREFIX)} == references


def test_the_registered_model_loads_and_scores_the_logged_forget_accuracy(registered, mlflow_server):
    state, client, _ = registered
    version = client.get_model_version_by_alias(NAME, "best")
    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pytorch.load_model(f"models:/{NAME}@best")
    cfg = UnlearnConfig.from_dict(json.loads(version.tags["mixsweep.config"]))
    data = load_data(cfg)
    split = make_split(cfg, data)
    with torch.no_grad():
        predicted = model(data.normalize(data.train_images[split.forget_idx])).argmax(1)
    forget_accuracy = 100.0 * (predicted == split.train_labels[split.forget_idx]).double().mean().item()
    epoch = int(version.tags["mixsweep.model_epoch"])
    logged = {m.step: m.value for m in client.get_metric_history(version.run_id, "train_f")}[epoch]
    assert forget_accuracy == pytest.approx(logged, abs=1e-9)
    assert logged == float(version.tags["metric.train_f"])


def test_a_second_export_adds_a_version_under_its_own_alias(registered):
    state, client, printed = registered
    assert f"registered: models:/{NAME}@tuned  (version 2," in printed[1]
    assert client.get_model_version_by_alias(NAME, "tuned").version == "2"
    assert client.get_model_version_by_alias(NAME, "best").version == "1"


def test_the_sweeps_parent_run_shows_the_winner_its_data_and_its_source(registered):
    state, client, _ = registered
    parent = client.get_run(state.parent_run_id)
    best = best_row(state)
    assert parent.data.metrics["avg_gap"] == best["avg_gap"]
    assert parent.data.tags["mixsweep.best_run_id"] == best["mlflow_run_id"]
    best_model = logged_model(client, client.get_run(best["mlflow_run_id"]))
    assert {m.model_id for m in parent.outputs.model_outputs} == {best_model.model_id}
    assert parent.data.tags["mlflow.source.name"].startswith("mixsweep run ")
    assert {d.dataset.name for d in parent.inputs.dataset_inputs} == {"tiny", "tiny/class"}


def test_a_bad_alias_is_refused_before_the_export(recorded_sweep, capsys):
    state, _ = recorded_sweep
    assert main(["export", state.name, "--storage", state.storage, "--register", NAME, "--alias", "v3"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("mixsweep: error: --alias 'v3': ") and len(error.strip().splitlines()) == 1


def test_an_ablation_row_becomes_a_valid_alias():
    assert alias_of("alpha_0.1") == "alpha_0_1"
    assert alias_of("full") == "full"
    assert alias_of("v2") == "row_v2"


def test_rows_register_their_best_run_under_the_rows_names(recorded_sweep, mlflow_server):
    """What `--register` does for an ablation's variants (or a benchmark's rows): each row's run with the
    lowest avg_gap, aliased by the row; here the recorded sweep's trials stand in for two rows."""
    state, _ = recorded_sweep
    client = MlflowClient(mlflow_server)
    children = sorted(client.search_runs([state.experiment_id], records.trial_runs_of(state.parent_run_id)),
                      key=lambda r: r.info.run_id)
    rows = {"alpha_0.5": children[:1], "full": children[1:]}
    registered = register_rows(state, rows, name="recorded-rows")
    assert [(r.alias, r.run_id) for r in registered] == [
        ("alpha_0_5", children[0].info.run_id),
        ("full", min(children[1:], key=lambda r: r.data.metrics["avg_gap"]).info.run_id)]
    for item in registered:
        version = client.get_model_version_by_alias("recorded-rows", item.alias)
        assert version.run_id == item.run_id
        assert float(version.tags["metric.avg_gap"]) == client.get_run(item.run_id).data.metrics["avg_gap"]
