"""Input a user can get wrong is refused at the edge: one sentence, exit status 2, nothing started.

A bad space file is refused before MLflow is touched (no run, not even a database file); a resource
request no node can hold is refused before Tune queues a trial (no experiment folder, no run).
"""
from __future__ import annotations

import subprocess
import sys

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from mixsweep.cli import main

BAD_SEARCHES = {
    "reversed range": ({"alpha": {"low": 4.0, "high": 0.1}}, "search.alpha is reversed"),
    "unknown parameter": ({"alphaa": {"low": 0.1, "high": 4.0}}, "search.alphaa is not a config field"),
    "wrong type": ({"alpha": {"low": "x", "high": 4.0}}, "search.alpha: low 'x' is a str"),
    "empty range": ({"alpha": {"low": 1.0, "high": 1.0}}, "search.alpha"),
}


def all_runs(uri: str) -> list[str]:
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return [r.info.run_id for r in client.search_runs(experiments, run_view_type=ViewType.ALL)] if experiments else []


@pytest.mark.parametrize("case", sorted(BAD_SEARCHES))
def test_a_bad_space_file_exits_2_naming_file_and_key_and_creates_no_run(case, tmp_path, space_writer,
                                                                         mlflow_server, capsys):
    search, message = BAD_SEARCHES[case]
    space = space_writer(tmp_path / "bad.yaml", search=search)
    before = all_runs(mlflow_server)
    status = main(["run", str(space), "--tracking-uri", mlflow_server, "--storage", str(tmp_path / "sweeps")])
    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith(f"mixsweep: error: {space}: ") and message in error
    assert len(error.strip().splitlines()) == 1
    assert all_runs(mlflow_server) == before
    assert not (tmp_path / "sweeps").exists()


def test_the_command_itself_exits_2_and_leaves_no_mlflow_store(tmp_path, space_writer, cli_env):
    space = space_writer(tmp_path / "bad.yaml", search={"alpha": {"low": 4.0, "high": 0.1}})
    database = tmp_path / "mlflow.db"
    done = subprocess.run([sys.executable, "-m", "mixsweep", "run", str(space), "--tracking-uri",
                           f"sqlite:///{database}", "--storage", str(tmp_path / "sweeps")],
                          env=cli_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "search.alpha is reversed" in done.stderr and "Traceback" not in done.stderr
    assert not database.exists()


@pytest.mark.parametrize("flags, message", [
    (["--gpus-per-trial", "1"], "the Ray cluster has no GPU"),
    (["--gpus-per-trial", "0.25"], "the Ray cluster has no GPU"),
    (["--cpus-per-trial", "8"], "the largest node has 2 CPUs"),
    (["--gpus-per-trial", "1.5"], "needs a whole number of GPUs"),
    (["--cpus-per-trial", "0"], "positive number of CPUs"),
])
def test_an_infeasible_resource_request_is_refused_before_any_trial(flags, message, local_ray, tmp_path,
                                                                      space_writer, capsys):
    space = space_writer(tmp_path / "tiny.yaml")
    database = tmp_path / "mlflow.db"
    status = main(["run", str(space), "--tracking-uri", f"sqlite:///{database}", "--storage",
                   str(tmp_path / "sweeps"), *flags])
    error = capsys.readouterr().err
    assert status == 2 and message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "sweeps").exists()   # no Tune experiment, so no trial was queued
    assert not database.exists()                # and no MLflow run


def test_an_existing_sweep_name_is_refused_with_the_resume_command(tmp_path, space_writer, capsys):
    space = space_writer(tmp_path / "tiny.yaml")
    (tmp_path / "sweeps" / "tiny").mkdir(parents=True)
    (tmp_path / "sweeps" / "tiny" / "mixsweep.json").write_text("{}")
    status = main(["run", str(space), "--storage", str(tmp_path / "sweeps"),
                   "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert status == 2 and "mixsweep resume tiny" in capsys.readouterr().err


@pytest.mark.parametrize("cpus, gpus, message", [
    (1, 2, "the largest node has 1 GPUs"),
    (16, 1, "no single node has both"),
    (64, 0, "the largest node has 32 CPUs"),
])
def test_requests_are_checked_against_each_node_of_a_gpu_cluster(cpus, gpus, message, monkeypatch):
    # The CI machine has no GPU node, so this one check reads a described cluster: a 32-CPU head without
    # GPUs and an 8-CPU worker with one GPU (the shape of cluster.yaml).
    from mixsweep import cluster
    from mixsweep.errors import UsageError

    nodes = [{"Alive": True, "Resources": {"CPU": 32.0}}, {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
             {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]
    monkeypatch.setattr(cluster.ray, "nodes", lambda: nodes)
    with pytest.raises(UsageError, match=message):
        cluster.check_resources(cpus_per_trial=cpus, gpus_per_trial=gpus)
    cluster.check_resources(cpus_per_trial=8, gpus_per_trial=0.25)   # fits the GPU worker


def test_a_gpu_request_is_accepted_when_the_autoscaler_can_start_a_gpu_worker(local_ray):
    # `ray up cluster.yaml` starts with no GPU worker (min_workers 0): the request must be judged by the
    # node types the autoscaler publishes, not only by the nodes alive now. This writes such a published
    # config (the real protobuf, in the real GCS of the local Ray) and checks both ways.
    import ray
    from ray.core.generated import autoscaler_pb2
    from ray.experimental import internal_kv

    from mixsweep import cluster
    from mixsweep.errors import UsageError

    def publish(max_gpu_workers: int) -> None:
        config = autoscaler_pb2.ClusterConfig()
        config.node_group_configs.add(name="head", resources={"CPU": 0}, min_count=1, max_count=1)
        config.node_group_configs.add(name="gpu", resources={"CPU": 4, "GPU": 1}, min_count=0,
                                      max_count=max_gpu_workers)
        internal_kv._internal_kv_put(ray._raylet.GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, config.SerializeToString(),
                                     overwrite=True, namespace=ray._raylet.GCS_AUTOSCALER_STATE_NAMESPACE)

    try:
        publish(max_gpu_workers=4)
        cluster.check_resources(cpus_per_trial=1, gpus_per_trial=0.25)
        with pytest.raises(UsageError, match="the largest node has 1 GPUs"):
            cluster.check_resources(cpus_per_trial=1, gpus_per_trial=2)
        publish(max_gpu_workers=0)
        with pytest.raises(UsageError, match="no node type it can scale up to has one"):
            cluster.check_resources(cpus_per_trial=1, gpus_per_trial=0.25)
    finally:
        internal_kv._internal_kv_del(ray._raylet.GCS_AUTOSCALER_CLUSTER_CONFIG_KEY,
                                     namespace=ray._raylet.GCS_AUTOSCALER_STATE_NAMESPACE)
