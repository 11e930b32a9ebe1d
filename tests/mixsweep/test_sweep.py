"""A real 4-trial sweep on tiny real data: MLflow records, model artifacts, export, exact re-run.

One sweep per module (2 trials at a time on a local 2-CPU Ray, trials logging over HTTP to a real
MLflow server); the tests below read what it left behind, as a user would.
"""
from __future__ import annotations

import math

import mlflow
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from mixsweep import state as sweep_state
from mixsweep.cli import main
from mixsweep.export import LEADING_COLUMNS, REPORTED_METRICS
from mixunlearn.config import UnlearnConfig
from mixunlearn.data import load_data
from mixunlearn.metrics import evaluate
from mixunlearn.models import build_model
from mixunlearn.tasks import make_split

pytestmark = pytest.mark.slow

NAME = "four-trials"
# Everything a trial reports that does not measure time: a CPU re-run must reproduce each exactly.
OUTCOMES = ("train_r", "train_f", "test", "test_r", "test_f", "asr", "ua", "ra", "ta", "mia_efficacy", "avg_gap")


@pytest.fixture(scope="module")
def sweep(local_ray, mlflow_server, space_writer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    space = space_writer(folder / "tiny.yaml", sweep={"trials": 4, "concurrency": 2, "grace_epochs": 1})
    storage = folder / "sweeps"
    status = main(["run", str(space), "--trials", "4", "--concurrency", "2", "--storage", str(storage),
                   "--tracking-uri", mlflow_server, "--name", NAME])
    assert status == 0
    state = sweep_state.load(NAME, str(storage))
    client = MlflowClient(mlflow_server)
    children = client.search_runs([state.experiment_id], run_view_type=ViewType.ALL,
                                  filter_string=f"tags.`mlflow.parentRunId` = '{state.parent_run_id}'")
    return state, client, children


def test_one_parent_with_four_closed_children(sweep):
    state, client, children = sweep
    parent = client.get_run(state.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["trials"] == "4" and "cluster_CPU" in parent.data.params
    assert "mlflow.source.git.commit" in parent.data.tags
    assert [a.path for a in client.list_artifacts(state.parent_run_id, "space")] == ["space/tiny.yaml"]
    assert len(children) == 4
    assert {c.info.status for c in children} == {"FINISHED"}   # ASHA's stops too: tagged, not KILLED
    for child in children:
        assert child.data.params["dataset"] == "fashion_mnist"   # params = the trial's flat config
        assert set(child.data.params) == set(UnlearnConfig.field_names())


def test_each_child_has_epoch_history_and_a_model_that_reproduces_train_f(sweep, tmp_path):
    state, client, children = sweep
    torch.set_num_threads(1)
    for child in children:
        run_id = child.info.run_id
        model_epoch = int(child.data.tags["mixsweep.model_epoch"])
        history = {m.step: m.value for m in client.get_metric_history(run_id, "train_f")}
        assert sorted(history) == list(range(1, max(history) + 1))
        expected_epochs = int(child.data.tags.get("mixsweep.stopped_at_epoch", 3))   # ASHA's stop, or all 3
        assert max(history) == expected_epochs and model_epoch == expected_epochs

        folder = tmp_path / run_id
        folder.mkdir()
        config_path = client.download_artifacts(run_id, "config.yaml", str(folder))
        weights_path = client.download_artifacts(run_id, "unlearned_model.pt", str(folder))
        client.download_artifacts(run_id, "generator.pt", str(folder))
        client.download_artifacts(run_id, "metrics_table.txt", str(folder))
        cfg = UnlearnConfig.from_dict(yaml.safe_load(open(config_path)))
        data = load_data(cfg)
        model = build_model(cfg.model, num_classes=data.num_classes, in_channels=data.in_channels,
                            image_size=data.image_size)
        model.load_state_dict(torch.load(weights_path, weights_only=True))
        metrics = evaluate(model.eval(), data, make_split(cfg, data), batch_size=cfg.eval_batch_size,
                           mia_samples=cfg.mia_samples, seed=cfg.seed)
        assert metrics["train_f"] == history[model_epoch]


def test_the_mlflow_pytorch_model_loads_and_matches_the_weights(sweep, mlflow_server, tmp_path):
    state, client, children = sweep
    child = children[0]
    mlflow.set_tracking_uri(mlflow_server)
    logged = mlflow.pytorch.load_model(f"models:/{child.outputs.model_outputs[0].model_id}")
    cfg = UnlearnConfig.from_dict(yaml.safe_load(open(client.download_artifacts(child.info.run_id, "config.yaml",
                                                                                 str(tmp_path)))))
    data = load_data(cfg)
    model = build_model(cfg.model, num_classes=data.num_classes, in_channels=data.in_channels,
                        image_size=data.image_size)
    weights = client.download_artifacts(child.info.run_id, "unlearned_model.pt", str(tmp_path))
    model.load_state_dict(torch.load(weights, weights_only=True))
    images = data.normalize(data.train_images[:5])
    with torch.no_grad():
        torch.testing.assert_close(logged(images), model.eval()(images))


def test_export_writes_a_best_config_that_train_reproduces_exactly(sweep, mlflow_server, capsys):
    state, client, children = sweep
    assert main(["export", NAME, "--storage", state.storage]) == 0
    printed = capsys.readouterr().out
    best = state.export_dir / "best.yaml"
    assert str(best) in printed and best.is_file()
    assert "# mixsweep-threads: 1" in best.read_text()
    assert f"# mixsweep-references: {state.storage}/references" in best.read_text()
    exported = {a.path for a in client.list_artifacts(state.parent_run_id, "export")}
    assert {"export/best.yaml", "export/trials.parquet"} <= exported

    rows = {r["trial_id"]: r for r in pq.read_table(state.export_dir / "trials.parquet").to_pylist()}
    header = best.read_text().splitlines()[0]
    trial = next(r for trial_id, r in rows.items() if f"trial {trial_id}," in header)
    assert main(["train", str(best), "--tracking-uri", mlflow_server]) == 0
    train_runs = client.search_runs([state.experiment_id], filter_string="tags.`mixsweep.kind` = 'train'",
                                    order_by=["attributes.start_time DESC"], max_results=1)
    rerun = train_runs[0]
    assert rerun.info.status == "FINISHED"
    # Re-run against the very f_D and Retrain the trial was judged by: the tensors' sha256 on both runs.
    trial_tags = client.get_run(trial["mlflow_run_id"]).data.tags
    for tag in ("mixsweep.reference.original_sha256", "mixsweep.reference.retrain_sha256"):
        assert len(rerun.data.tags[tag]) == 64 and rerun.data.tags[tag] == trial_tags[tag], tag
    assert int(rerun.data.metrics["epoch"]) == int(trial["epoch"])
    for metric in OUTCOMES:
        if not math.isnan(trial[metric]):
            assert rerun.data.metrics[metric] == trial[metric], metric


def test_the_parquet_file_has_one_row_per_trial_with_the_documented_columns(sweep):
    state, client, children = sweep
    if not (state.export_dir / "trials.parquet").exists():
        assert main(["export", NAME, "--storage", state.storage]) == 0
    table = pq.read_table(state.export_dir / "trials.parquet")
    assert table.num_rows == 4
    assert table.column_names == [*LEADING_COLUMNS, *UnlearnConfig.field_names(), *REPORTED_METRICS]
    rows = table.to_pylist()
    assert {r["mlflow_run_id"] for r in rows} == {c.info.run_id for c in children}
    assert {r["status"] for r in rows} == {"FINISHED"}
    assert all(r["duration_s"] > 0 and r["dataset"] == "fashion_mnist" for r in rows)
    assert all(r["data_classes"] == [5, 6, 7, 8, 9] for r in rows)


def test_two_objectives_search_a_pareto_front_that_export_writes_one_file_each(local_ray, mlflow_server,
                                                                                space_writer, tmp_path):
    space = space_writer(tmp_path / "pareto.yaml", objectives=[{"metric": "test_f", "mode": "min"},
                                                              {"metric": "test_r", "mode": "max"}])
    storage = str(tmp_path / "sweeps")
    assert main(["run", str(space), "--trials", "2", "--concurrency", "2", "--epochs", "1", "--storage", storage,
                 "--tracking-uri", mlflow_server, "--name", "pareto"]) == 0
    state = sweep_state.load("pareto", storage)
    assert state.scheduler == "fifo"   # ASHA ranks by one metric; a Pareto search keeps every trial
    assert main(["export", "pareto", "--storage", storage]) == 0
    front = sorted((state.export_dir / "pareto").glob("*.yaml"))
    assert 1 <= len(front) <= 2 and not (state.export_dir / "best.yaml").exists()
    rows = pq.read_table(state.export_dir / "trials.parquet").to_pylist()
    for path in front:
        trial_id = path.stem
        config = UnlearnConfig.from_dict(yaml.safe_load(path.read_text()))
        row = next(r for r in rows if r["trial_id"] == trial_id)
        assert config.alpha == row["alpha"] and config.epochs == 1
        others = [r for r in rows if r["trial_id"] != trial_id]
        assert not any(o["test_f"] <= row["test_f"] and o["test_r"] >= row["test_r"]
                       and (o["test_f"], o["test_r"]) != (row["test_f"], row["test_r"]) for o in others)
