"""Every run's data as MLflow dataset inputs (trainables/datasets.py), as the recorded sweep left them."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from mixunlearn.config import UnlearnConfig
from mixunlearn.data import load_data
from mixunlearn.tasks import make_split
from trainables.datasets import DIGEST_CHARS
from trainables import records


def inputs_by_context(run) -> dict[str, object]:
    return {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d for d in run.inputs.dataset_inputs}


def test_each_trial_logs_its_data_and_its_forget_split(recorded_sweep, mlflow_server, tmp_path):
    state, _ = recorded_sweep
    client = MlflowClient(mlflow_server)
    children = client.search_runs([state.experiment_id], records.trial_runs_of(state.parent_run_id),
                                  run_view_type=ViewType.ALL)
    cfg = UnlearnConfig.from_dict({k: v for k, v in children[0].data.params.items()
                                   if k in UnlearnConfig.field_names()})
    data = load_data(cfg)
    split = make_split(cfg, data)
    for child in children:
        inputs = inputs_by_context(child)
        assert set(inputs) == {"training", "forget"}
        whole, forget = inputs["training"].dataset, inputs["forget"].dataset
        assert (whole.name, whole.digest) == ("tiny", data.fingerprint[:DIGEST_CHARS])
        profile = json.loads(whole.profile)
        assert profile["fingerprint"] == data.fingerprint and profile["train_images"] == len(data.train_labels)
        assert (profile["train_subset"], profile["test_subset"]) == (cfg.train_subset, cfg.test_subset)
        assert (forget.name, forget.digest) == ("tiny/class", split.key()[:DIGEST_CHARS])
        tags = {t.key: t.value for t in inputs["forget"].tags}
        assert json.loads(tags["mixsweep.task_spec"]) == split.spec
        # The exact D_f indices travel with the run (its input tag names its own copy of the Parquet), and
        # with the dataset (MLflow keeps one per experiment: its source is the first run's copy).
        own = tags["mixsweep.forget_split"]
        assert own.startswith(f"runs:/{child.info.run_id}/forget_split/")
        for n, uri in enumerate((own, json.loads(forget.source)["uri"])):
            _, run_id, artifact = uri.split("/", 2)   # runs:/<run id>/<artifact path>
            folder = tmp_path / f"{child.info.run_id}-{n}"
            folder.mkdir()
            path = client.download_artifacts(run_id, artifact, str(folder))
            assert pq.read_table(path).column("forget_idx").to_pylist() == split.forget_idx.tolist()


def test_runs_of_the_same_split_are_found_by_its_digest(recorded_sweep, mlflow_server):
    state, _ = recorded_sweep
    client = MlflowClient(mlflow_server)
    children = client.search_runs([state.experiment_id], records.trial_runs_of(state.parent_run_id),
                                  run_view_type=ViewType.ALL)
    digest = inputs_by_context(children[0])["forget"].dataset.digest
    found = client.search_runs([state.experiment_id], f"dataset.digest = '{digest}' AND dataset.context = 'forget'",
                               run_view_type=ViewType.ALL, max_results=1000)
    # The sweep's trials and the sweep itself (other tests' runs on the same split may be there too).
    assert {c.info.run_id for c in children} | {state.parent_run_id} <= {r.info.run_id for r in found}
    assert len(children) == state.trials
