"""ASHA with trials that run their CPU attackers only at its rungs stops the very trials it stops when
every trial evaluates everything every epoch (same space, same seeds, one trial at a time). The deferred
sweep's curve budget is 0, so its epochs between the rungs get no accuracies at all: the history says
exactly which epochs were evaluated."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from mixsweep import state as sweep_state, sweep as sweep_module
from mixsweep.cli import main
from search_spaces import load_space

pytestmark = pytest.mark.slow

EPOCHS, GRACE = 6, 2    # ASHA's rungs: epochs 2 and 4; epochs 1, 3 and 5 run no attacker
TRIALS = 4


def run_tiny_sweep(name, space, storage, uri):
    assert main(["run", str(space), "--trials", str(TRIALS), "--concurrency", "1", "--storage", str(storage),
                 "--tracking-uri", uri, "--name", name]) == 0
    state = sweep_state.load(name, str(storage))
    analysis = tune.ExperimentAnalysis(state.experiment_path)
    # Keyed by config: the seeded TPE sampler proposes the same configs in both sweeps (trial ids differ).
    trials = sorted(analysis.trials, key=lambda t: json.dumps(t.config, sort_keys=True))
    reported = {t.trial_id: reported_epochs(t) for t in trials}
    return state, trials, reported


def reported_epochs(trial) -> list[int]:
    """The epochs of every result Tune recorded for the trial (its result.json, one result a line)."""
    lines = (Path(trial.path) / "result.json").read_text().splitlines()
    return [int(json.loads(line)["epoch"]) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def two_sweeps(local_ray, mlflow_server, space_writer, tmp_path_factory, request):
    from tests.mixsweep.conftest import TINY_REAL_BASE

    folder = tmp_path_factory.mktemp("deferred")
    space = space_writer(folder / "tiny.yaml", base={**TINY_REAL_BASE, "epochs": EPOCHS},
                         sweep={"trials": TRIALS, "concurrency": 1, "grace_epochs": GRACE, "curve_budget": 0})
    deferred = run_tiny_sweep("deferred", space, folder / "sweeps", mlflow_server)
    patch = pytest.MonkeyPatch()
    patch.setattr(sweep_module, "asha_rungs", lambda *args: None)   # the old way: attackers every epoch
    try:
        everything = run_tiny_sweep("everything", space, folder / "sweeps", mlflow_server)
    finally:
        patch.undo()
    return space, deferred, everything


def test_the_rungs_are_the_milestones_of_rays_asha(tmp_path, space_writer):
    for epochs, grace in ((EPOCHS, GRACE), (5, 1), (40, 2), (20, 3), (1, 1)):
        space = load_space(space_writer(tmp_path / f"s{epochs}-{grace}.yaml", sweep={"grace_epochs": grace}))
        rungs = sweep_module.asha_rungs(space, epochs)
        asha = ASHAScheduler(time_attr="epoch", metric="avg_gap", mode="min", max_t=epochs,
                             grace_period=min(grace, epochs), reduction_factor=sweep_module.ASHA_REDUCTION)
        assert sorted(rungs) == sorted(milestone for milestone, _ in asha._brackets[0]._rungs)


def test_the_same_trials_are_stopped_at_the_same_epochs(two_sweeps):
    _, (_, deferred, _), (_, everything, _) = two_sweeps
    assert [t.config for t in deferred] == [t.config for t in everything]
    reached = [int(t.last_result["epoch"]) for t in deferred]
    assert reached == [int(t.last_result["epoch"]) for t in everything]
    assert [t.last_result["avg_gap"] for t in deferred] == [t.last_result["avg_gap"] for t in everything]
    assert min(reached) < EPOCHS, "ASHA stopped no trial: the comparison would show nothing"
    assert max(reached) == EPOCHS


def test_tune_hears_the_rungs_and_the_last_epoch_and_mlflow_keeps_every_epoch_it_computed(two_sweeps,
                                                                                          mlflow_server):
    _, (state, trials, reported), (_, _, reported_everything) = two_sweeps
    client = MlflowClient(mlflow_server)
    for trial in trials:
        last = int(trial.last_result["epoch"])
        evaluated = [e for e in (2, 4, 6) if e <= last]
        assert reported[trial.trial_id] == evaluated
        run_id = trial.last_result["mlflow_run_id"]
        steps = {name: [m.step for m in client.get_metric_history(run_id, name)]
                 for name in ("epoch", "unlearn_seconds", "train_f", "ta", "avg_gap")}
        assert steps["epoch"] == steps["unlearn_seconds"] == list(range(1, last + 1))   # every trained epoch
        assert steps["train_f"] == steps["ta"] == steps["avg_gap"] == evaluated   # no budget for the others
    first_everything = next(iter(reported_everything.values()))
    assert first_everything == list(range(1, len(first_everything) + 1))
