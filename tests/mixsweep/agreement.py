"""The check every kill-and-resume test ends with: a sweep's three records hold the same trials, each in
the one state its ending means (mixsweep/endings.py), none RUNNING, no more than the budget.

    states = assert_records_agree(state, client, budget=4)   # {trial id: ending}

Read independently of mixsweep's code: optuna.db through Optuna, Tune's experiment through
ExperimentAnalysis, MLflow through a client.
"""
from __future__ import annotations

import math

import optuna
from mlflow.entities import ViewType
from optuna.trial import TrialState
from ray import tune

EXPECTED = {   # Optuna state and ending attribute -> (Tune status, MLflow status, MLflow tags that must be "true")
    ("COMPLETE", "completed"): ("TERMINATED", "FINISHED", ()),
    ("PRUNED", "stopped_early"): ("TERMINATED", "FINISHED", ("mixsweep.stopped_early",)),
    ("FAIL", "diverged"): ("TERMINATED", "FAILED", ("mixsweep.diverged",)),
    ("FAIL", "failed"): ("ERROR", "FAILED", ()),
    ("FAIL", "lost"): ("ERROR", "KILLED", ("mixsweep.lost",)),
}


def sweep_trial_runs(client, state) -> dict[str, object]:
    """The sweep's trial runs by Tune trial id (a benchmark's seed runs, under the same parent, left out)."""
    runs = client.search_runs([state.experiment_id], run_view_type=ViewType.ALL, max_results=1000,
                              filter_string=f"tags.`mlflow.parentRunId` = '{state.parent_run_id}'")
    return {r.data.tags["mixsweep.trial_id"]: r for r in runs
            if r.data.tags.get("mixsweep.benchmark.role") != "seed_run"}


def assert_records_agree(state, client, *, budget: int) -> dict[str, str]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=state.name, storage=state.optuna_url)
    asked = [t for t in study.trials if t.state != TrialState.WAITING]
    assert len(asked) <= budget, f"{len(asked)} Optuna trials for a budget of {budget}"
    assert not [t.number for t in asked if t.state == TrialState.RUNNING], "an Optuna trial left RUNNING"
    optuna_trials = {t.user_attrs["mixsweep.trial_id"]: t for t in asked}
    tune_trials = {t.trial_id: t for t in tune.ExperimentAnalysis(state.experiment_path).trials}
    runs = sweep_trial_runs(client, state)
    assert set(optuna_trials) == set(tune_trials) == set(runs), (sorted(optuna_trials), sorted(tune_trials),
                                                                 sorted(runs))
    metric = state.objectives[0][0]
    endings = {}
    for trial_id, frozen in optuna_trials.items():
        ending = frozen.user_attrs["mixsweep.ending"]
        tune_status, mlflow_status, tags = EXPECTED[(frozen.state.name, ending)]
        run, trial = runs[trial_id], tune_trials[trial_id]
        assert trial.status == tune_status, (trial_id, ending, trial.status)
        assert run.info.status == mlflow_status, (trial_id, ending, run.info.status)
        for tag in tags:
            assert run.data.tags.get(tag) == "true", (trial_id, tag)
        epoch = int(frozen.user_attrs.get("mixsweep.epoch", 0))   # none: it failed before reporting
        if ending == "stopped_early":
            assert run.data.tags["mixsweep.stopped_at_epoch"] == str(epoch)
            assert max(frozen.intermediate_values) == epoch                # the value it was stopped on
            assert frozen.value == frozen.intermediate_values[epoch]
            assert int(trial.last_result["epoch"]) == epoch < int(frozen.user_attrs["mixsweep.planned_epochs"])
        else:
            assert "mixsweep.stopped_early" not in run.data.tags, trial_id
        if ending == "completed":
            assert epoch == int(frozen.user_attrs["mixsweep.planned_epochs"])
            assert frozen.values[0] == trial.last_result[metric] == run.data.metrics[metric]
            if len(state.objectives) > 1:   # Optuna keeps no intermediate values for several objectives
                assert frozen.user_attrs[f"mixsweep.epoch_{epoch}_values"] == frozen.values
        if frozen.state in (TrialState.COMPLETE, TrialState.PRUNED) and len(state.objectives) == 1:
            history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, metric)}
            for step, value in frozen.intermediate_values.items():   # each at its epoch, as MLflow logged it
                assert math.isclose(value, history[step]), (trial_id, step)
        endings[trial_id] = ending
    return endings
