"""A sweep on a real multi-node Ray cluster, as a user runs and browses it.

One `ray.cluster_utils.Cluster` for the module: a head with no CPU (like cluster.yaml's, it runs no
trial) and two 1-CPU nodes with the custom resources `node_a` and `node_b`. One 2-trial sweep runs on it
through the `mixsweep run ... --address` command, logging to the session's MLflow server; the tests read
where its trials ran and what MLflow holds, ask the cluster for what it can never give, and open the
MLflow UI in headless Chromium (Debian's package, driven over the DevTools protocol on a pipe).

The cluster is conftest.py's `three_node_cluster`, its nodes sharing one cache folder.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from ray import tune

from browser import Chromium, chromium_binary
from mixsweep import state as sweep_state
from mixsweep.cli import main
from trainables import records

NAME = "two-nodes"
# The built-in synthetic set: one 1-epoch trial takes seconds on one core, with nothing to download.
TINY_SPACE = {
    "base": {"dataset": "tiny", "task": "class", "forget_class": 0, "model": "cnn_small", "ref_epochs": 1,
             "epochs": 1, "batch_size": 16, "mia_samples": 100, "eval_batch_size": 512},
    "search": {"alpha": {"low": 0.1, "high": 4.0, "log": True}},
    "objectives": [{"metric": "avg_gap", "mode": "min"}],
    "sweep": {"trials": 2, "concurrency": 2, "grace_epochs": 1},
}
SWEEP_TIMEOUT_S = 420


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, three_node_cluster):
    """A head (CPU 0) and two 1-CPU nodes with distinct custom resources; {node id: resource name}."""
    cache = tmp_path_factory.mktemp("reference-cache")
    with three_node_cluster(env={"MIXSWEEP_CACHE": str(cache)}) as built:
        yield built


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def sweep(cluster, space, mlflow_server, tmp_path_factory):
    """`mixsweep run` in its own process against the cluster's address: the sweep's state, the MLflow
    client, its child runs and the command's output."""
    nodes, _ = cluster
    storage = tmp_path_factory.mktemp("sweeps")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mixsweep", "run", str(space), "--address", nodes.address, "--trials", "2",
         "--concurrency", "2", "--storage", str(storage), "--tracking-uri", mlflow_server, "--name", NAME],
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=SWEEP_TIMEOUT_S)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    print(f"2-trial sweep on the 2-node cluster: {time.monotonic() - started:.0f} s")
    state = sweep_state.load(NAME, str(storage))
    client = MlflowClient(mlflow_server)
    children = client.search_runs([state.experiment_id], run_view_type=ViewType.ALL,
                                  filter_string=f"tags.`{records.PARENT_TAG}` = '{state.parent_run_id}'")
    return state, client, children, output


# ---- placement and records ----------------------------------------------------------------------------

def test_trials_ran_on_both_nodes_and_none_on_the_head(cluster, sweep):
    _, node_names = cluster
    state, client, children, _ = sweep
    assert len(children) == 2
    placed = {child.data.tags[records.NODE_ID_TAG] for child in children}
    assert placed == set(node_names), f"trials ran on {placed}, the worker nodes are {node_names}"
    parent = client.get_run(state.parent_run_id)
    assert parent.data.params["cluster_nodes"] == "3.0" and parent.data.params["cluster_CPU"] == "2.0"
    assert parent.data.params["address"] == cluster[0].address


def test_every_trial_is_recorded_in_the_one_mlflow_server(sweep, mlflow_server):
    state, client, children, _ = sweep
    assert state.tracking_uri == mlflow_server
    assert client.get_run(state.parent_run_id).info.status == "FINISHED"
    assert {child.info.status for child in children} == {"FINISHED"}
    assert {child.data.tags[records.KIND_TAG] for child in children} == {"trial"}
    # Tune's view of the same trials: each one's result names its run in this server.
    trials = tune.ExperimentAnalysis(state.experiment_path).trials
    assert {t.status for t in trials} == {"TERMINATED"}
    assert {t.last_result["mlflow_run_id"] for t in trials} == {c.info.run_id for c in children}
    assert {t.trial_id for t in trials} == {c.data.tags[records.TRIAL_TAG] for c in children}


# ---- infeasible requests ------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    # The cluster has 2 CPUs in all, but no node holds 2: Tune would queue the trials forever.
    (["--cpus-per-trial", "2"], "--cpus-per-trial 2.0: the largest node has 1 CPUs; ask for at most 1"),
    (["--gpus-per-trial", "1"], "--gpus-per-trial 1.0: the Ray cluster has no GPU"),
    (["--gpus-per-trial", "0.25"], "--gpus-per-trial 0.25: the Ray cluster has no GPU"),
])
def test_a_request_no_node_can_hold_is_refused_before_any_trial(flags, message, cluster, sweep, space, tmp_path,
                                                               mlflow_server, capsys):
    nodes, _ = cluster
    name = "refused-" + flags[0].strip("-")
    client = MlflowClient(mlflow_server)
    runs_before = client.search_runs([sweep[0].experiment_id], run_view_type=ViewType.ALL, max_results=1000)
    assert not ray.is_initialized()
    status = main(["run", str(space), "--address", nodes.address, "--storage", str(tmp_path / "sweeps"),
                   "--tracking-uri", mlflow_server, "--name", name, *flags])
    error = capsys.readouterr().err
    assert not ray.is_initialized()   # `mixsweep` let go of the cluster it joined
    assert status == 2, error
    assert message in error and len(error.strip().splitlines()) == 1, error
    assert not (tmp_path / "sweeps").exists()   # no Tune experiment: no trial was queued
    runs_after = client.search_runs([sweep[0].experiment_id], run_view_type=ViewType.ALL, max_results=1000)
    assert len(runs_after) == len(runs_before)  # no parent run, no child run
    assert not [r for r in runs_after if r.info.run_name == name]


# ---- the MLflow UI in a real browser ------------------------------------------------------------------

def run_link(run_id: str) -> str:
    return f"document.querySelector('a[href$=\"/runs/{run_id}\"]')"


@pytest.mark.skipif(chromium_binary() is None, reason="no Chromium: `apt-get install chromium` (scripts/setup.sh)")
def test_the_mlflow_ui_lists_the_sweep_and_its_trials_in_a_real_browser(sweep, mlflow_server, tmp_path):
    state, client, children, _ = sweep
    parent = client.get_run(state.parent_run_id)
    browser = Chromium(chromium_binary(), tmp_path / "profile", tmp_path / "chromium.log")
    try:
        browser.open(f"{mlflow_server}/#/experiments/{state.experiment_id}/runs")
        # The runs table is drawn by the UI's JavaScript from the tracking API: wait for the parent's row.
        browser.wait_for(f"!!{run_link(state.parent_run_id)}")
        assert not any(browser.evaluate(f"!!{run_link(c.info.run_id)}") for c in children)   # folded under it
        expanded = browser.evaluate(f"""(() => {{
            const cell = {run_link(state.parent_run_id)}.closest('[role=gridcell]');
            const button = cell && cell.querySelector('button');
            if (!button) return false;
            button.click();
            return true; }})()""")
        assert expanded, "the parent run's row has no expand button: are its children nested under it?"
        browser.wait_for(" && ".join(f"!!{run_link(c.info.run_id)}" for c in children))
        table = browser.evaluate("document.querySelector('[role=grid]').innerText")
        shot = browser.screenshot(tmp_path / "mlflow-ui.png")
    finally:
        browser.close()
    (tmp_path / "runs-table.txt").write_text(table)
    print(f"screenshot of the MLflow UI: {shot}")
    rows = table.split("\n")
    assert parent.info.run_name == NAME and NAME in rows
    names = [child.info.run_name for child in children]
    assert all(name in rows for name in names), table
    assert rows.index(NAME) < min(rows.index(name) for name in names)   # the children under their sweep
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
