"""Kill the driver of a running sweep, resume it: the sweep completes, ended trials are not trained again,
and its three records agree.

The driver (`mixsweep run` in its own process group, with its own local Ray) is killed with SIGKILL as
soon as MLflow shows one trial ended: no chance to save anything on the way out, and Tune's last snapshot
may predate the trial that started next. `mixsweep resume` must then finish the sweep through
Tuner.restore, leave no MLflow run open, leave the runs that had ended untouched (same end time, one
logged model each: none was trained twice), and end with Optuna, Tune and MLflow holding the same
trials, each in the state its ending means, within the budget (tests/mixsweep/agreement.py).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from ray import tune

from agreement import assert_records_agree
from mixsweep import state as sweep_state

pytestmark = pytest.mark.slow

NAME = "killed-and-resumed"
TRIALS = 3   # at the kill: one ended, one running, one not started
WAIT_S = 600


def children(client: MlflowClient, state: sweep_state.SweepState):
    return client.search_runs([state.experiment_id], run_view_type=ViewType.ALL,
                              filter_string=f"tags.`mlflow.parentRunId` = '{state.parent_run_id}'")


def wait_for_an_ended_trial(driver: subprocess.Popen, client: MlflowClient, storage: str, log) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert driver.poll() is None, f"the sweep ended before it could be killed:\n{log.read_text()[-3000:]}"
        try:
            state = sweep_state.load(NAME, storage)
        except Exception:   # noqa: BLE001 - mixsweep.json not written yet
            state = None
        if state and state.parent_run_id and any(r.info.status != "RUNNING" for r in children(client, state)):
            return
        time.sleep(1)
    raise AssertionError(f"no trial ended within {WAIT_S} s:\n{log.read_text()[-3000:]}")


def test_a_killed_sweep_resumes_to_the_end_without_training_ended_trials_again(tmp_path, space_writer, cli_env,
                                                                                mlflow_server):
    space = space_writer(tmp_path / "tiny.yaml", sweep={"trials": TRIALS, "concurrency": 1, "grace_epochs": 1})
    storage = str(tmp_path / "sweeps")
    command = [sys.executable, "-m", "mixsweep"]
    client = MlflowClient(mlflow_server)
    log = tmp_path / "run.log"
    with log.open("w") as out:
        driver = subprocess.Popen([*command, "run", str(space), "--storage", storage, "--tracking-uri", mlflow_server,
                                   "--name", NAME], env=cli_env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            wait_for_an_ended_trial(driver, client, storage, log)
        finally:
            os.killpg(driver.pid, signal.SIGKILL)   # the driver and the local Ray it started
            driver.wait()

    state = sweep_state.load(NAME, storage)
    ended_before = {r.info.run_id: r.info.end_time for r in children(client, state) if r.info.status != "RUNNING"}
    assert ended_before

    resumed = subprocess.run([*command, "resume", NAME, "--storage", storage], env=cli_env, capture_output=True,
                             text=True, timeout=WAIT_S)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    endings = assert_records_agree(state, client, budget=TRIALS)
    trials = tune.ExperimentAnalysis(state.experiment_path).trials
    assert len(trials) == len(endings) == TRIALS                # every started trial counts: no 4th
    assert client.get_run(state.parent_run_id).info.status == "FINISHED"
    runs = {r.info.run_id: r for r in children(client, state)}
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]
    for run_id, end_time in ended_before.items():
        assert runs[run_id].info.end_time == end_time       # not reopened, not trained again
    for trial in trials:
        run = next(r for r in runs.values() if r.data.tags["mixsweep.trial_id"] == trial.trial_id)
        if endings[trial.trial_id] != "lost":                # a lost trial's run is closed without a model
            assert len(run.outputs.model_outputs) == 1       # one training, one logged model
