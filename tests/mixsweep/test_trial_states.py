"""Records that mean what they say: a real GA sweep in which one trial diverges, ASHA stops some and others
run all their epochs, read back from optuna.db, MLflow and Tune as a user would.

GA on tiny real Fashion-MNIST, 2 epochs (ASHA's rungs: 1 and 2), one trial at a time so that ASHA compares
each trial with those before it. The base point (trial 1) is lr 1e6, which diverges in epoch 1; the
seeded sampler then draws 3e-4 (runs both epochs) and 1e-7 (worse than the median at epoch 1: stopped).
"""
from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from agreement import assert_records_agree, sweep_trial_runs
from conftest import TINY_REAL_BASE
from mixsweep import state as sweep_state
from mixsweep.cli import main
from mixunlearn.config import UnlearnConfig

pytestmark = pytest.mark.slow

NAME = "three-endings"
TRIALS = 4
COMMON = {k: v for k, v in TINY_REAL_BASE.items() if k in UnlearnConfig.common_fields()}
GA_BASE = {**COMMON, "method": "ga", "epochs": 2, "batch_size": 16, "lr": 1.0e6}


@pytest.fixture(scope="module")
def swept(local_ray, mlflow_server, space_writer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("endings")
    space = space_writer(folder / "ga.yaml", base=GA_BASE, search={"lr": {"choices": [1.0e6, 3.0e-4, 1.0e-7]}},
                         sweep={"trials": TRIALS, "concurrency": 1, "grace_epochs": 1})
    storage = str(folder / "sweeps")
    assert main(["run", str(space), "--storage", storage, "--tracking-uri", mlflow_server, "--name", NAME,
                 "--seed", "0"]) == 0
    state = sweep_state.load(NAME, storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return state, MlflowClient(mlflow_server), optuna.load_study(study_name=NAME, storage=state.optuna_url)


def test_stopped_trials_are_pruned_finished_ones_complete_and_the_diverged_one_failed(swept):
    state, client, study = swept
    endings = assert_records_agree(state, client, budget=TRIALS)
    # The sweep exercised every ending this test is about (a change of sampler would show here).
    assert {"completed", "stopped_early", "diverged"} <= set(endings.values()), endings
    by_id = {t.user_attrs["mixsweep.trial_id"]: t for t in study.trials}
    runs = sweep_trial_runs(client, state)
    for trial_id, ending in endings.items():
        frozen, run = by_id[trial_id], runs[trial_id]
        if ending == "stopped_early":
            assert frozen.state == TrialState.PRUNED and list(frozen.intermediate_values) == [1]
            assert run.info.status == "FINISHED" and run.data.tags["mixsweep.stopped_at_epoch"] == "1"
            assert run.data.tags["mixsweep.model_epoch"] == "1"
        if ending == "completed":   # every rung's value, then the last one as its value
            assert frozen.state == TrialState.COMPLETE and sorted(frozen.intermediate_values) == [1, 2]
            assert frozen.value == frozen.intermediate_values[2] == run.data.metrics["avg_gap"]
        if ending == "diverged":
            assert frozen.state == TrialState.FAIL and run.info.status == "FAILED"
            assert float(run.data.params["lr"]) == 1.0e6


def test_the_study_tells_tpe_which_trials_are_results(swept):
    """What TPE and the importances read: only the trials that ran their epochs are COMPLETE."""
    state, client, study = swept
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete and all(float(t.params["lr"]) == 3.0e-4 for t in complete)
    assert study.best_trial.state == TrialState.COMPLETE and study.best_trial.user_attrs["mixsweep.epoch"] == 2


def test_a_resume_after_a_stale_snapshot_ends_with_the_three_records_agreeing(swept, mlflow_server, capsys):
    """Tune's snapshot made as stale as a SIGKILL leaves it (mixsweep/reconcile.py), on this module's sweep
    (last: it changes it): a completed trial it never had, a stopped one it holds RUNNING, and a trial
    Optuna and MLflow hold running that it never had (the kill interrupted it). `mixsweep resume` then
    finishes with one record of each, no trial trained again and none added past the budget's count."""
    from ray import tune

    from mixsweep.reconcile import Snapshot
    from trainables import records

    state, client, _ = swept
    study = optuna.load_study(study_name=NAME, storage=state.optuna_url)
    endings = {t.user_attrs["mixsweep.trial_id"]: t.user_attrs["mixsweep.ending"] for t in study.trials}
    completed = next(i for i, e in endings.items() if e == "completed")
    stopped = next(i for i, e in endings.items() if e == "stopped_early")
    snapshot = Snapshot.read(state.experiment_path)
    del snapshot.trials[completed]
    snapshot.trials[stopped][0]["status"] = "RUNNING"
    snapshot.write(set())
    lost = study.ask()
    lost.suggest_categorical("lr", [1.0e6, 3.0e-4, 1.0e-7])
    lost.set_user_attr("mixsweep.trial_id", "lost0001")
    run_id = records.open_child_run(client, experiment_id=state.experiment_id, parent_run_id=state.parent_run_id,
                                    trial_id="lost0001", run_name="lost", params={**GA_BASE, "lr": 3.0e-4})
    records.log_metrics(client, run_id, {"epoch": 1, "avg_gap": 9.0}, step=1)
    ended_before = {r.info.run_id: r.info.end_time for r in sweep_trial_runs(client, state).values()
                    if r.info.status != "RUNNING"}

    assert main(["resume", NAME, "--storage", state.storage]) == 0
    printed = capsys.readouterr().out
    assert f"trial {completed}: completed after Tune's last snapshot: added to it" in printed
    assert f"trial {stopped}: stopped early at epoch 1 after Tune's last snapshot: ended there too" in printed
    assert "trial lost0001: running when the driver was killed" in printed
    final = assert_records_agree(state, client, budget=TRIALS + 1)
    assert final == {**endings, "lost0001": "lost"}                  # no trial drawn past the count
    runs = sweep_trial_runs(client, state)
    assert {i: runs[i].info.end_time for i in runs if runs[i].info.run_id in ended_before} == \
        {i: ended_before[runs[i].info.run_id] for i in runs if runs[i].info.run_id in ended_before}
    trials = {t.trial_id: t for t in tune.ExperimentAnalysis(state.experiment_path).trials}
    assert trials[completed].last_result["avg_gap"] == runs[completed].data.metrics["avg_gap"]
    assert int(trials[stopped].last_result["epoch"]) == 1
