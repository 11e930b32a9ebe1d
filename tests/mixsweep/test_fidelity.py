"""One fidelity per figure, on constructed records: the importances, the console's best line, and export's
own rule (the best trial at the epoch it was ranked at, ASHA's cut included), pinned.

The studies are built with Optuna's own API, as the sweep's searcher leaves them (mixsweep/optuna_search.py):
completed trials COMPLETE with their final value, ASHA-stopped ones PRUNED with their epoch-1 value as an
intermediate value.
"""
from __future__ import annotations

import random

import optuna
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from ray.tune.experiment import Trial

from mixsweep.console import ProgressTable
from mixsweep.export import pareto_front, write_config
from mixsweep.fidelity import legacy, one_fidelity
from mixsweep.report import importances
from mixsweep.state import SweepState
from mixunlearn.config import UnlearnConfig

SPACE = {"x": FloatDistribution(0.0, 1.0), "y": FloatDistribution(0.0, 1.0)}


def sweep_like(*, stopped_as: TrialState, completed: int = 10, stopped: int = 10) -> optuna.Study:
    """Final values (epoch 2) depend on x only; epoch-1 values, larger and all over the place, on y only:
    an early epoch's values know nothing of what the configuration ends at."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    draw = random.Random(0)
    study = optuna.create_study(direction="minimize")
    for _ in range(completed):
        x, y = draw.random(), draw.random()
        study.add_trial(create_trial(params={"x": x, "y": y}, distributions=SPACE, value=x,
                                     intermediate_values={1: 10 + 10 * y, 2: x},
                                     user_attrs={"mixsweep.ending": "completed"}))
    for _ in range(stopped):
        x, y = draw.random(), draw.random()
        early = 10 + 10 * y
        if stopped_as == TrialState.PRUNED:   # as told now
            trial = create_trial(params={"x": x, "y": y}, distributions=SPACE, state=TrialState.PRUNED, value=early,
                                 intermediate_values={1: early}, user_attrs={"mixsweep.ending": "stopped_early"})
        else:                                 # as Ray's OptunaSearch told it: COMPLETE, worth its epoch-1 value
            trial = create_trial(params={"x": x, "y": y}, distributions=SPACE, value=early)
        study.add_trial(trial)
    return study


def top(scores: dict[str, float]) -> str:
    return max(scores, key=scores.get)


def test_importances_compare_completed_trials_only_where_mixing_would_flip_the_top_parameter():
    scores, compared, _ = importances(sweep_like(stopped_as=TrialState.PRUNED), ["avg_gap"])
    assert top(scores["avg_gap"]) == "x" and compared == "the 10 completed trials"
    # The same trials with the stopped ones counted as results (Ray's COMPLETE): y would lead.
    mixed = sweep_like(stopped_as=TrialState.COMPLETE)
    assert legacy(mixed) and not legacy(sweep_like(stopped_as=TrialState.PRUNED))
    scores_mixed = optuna.importance.get_param_importances(
        mixed, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    assert top(scores_mixed) == "y"


def test_with_too_few_completed_trials_every_trial_is_compared_at_one_rung():
    study = sweep_like(stopped_as=TrialState.PRUNED, completed=1)
    chosen = one_fidelity(study)
    assert chosen.epoch == 1 and chosen.label == "every trial at epoch 1 (11 trials; 1 completed)"
    assert sorted(t.value for t in chosen.trials) == sorted(t.intermediate_values[1] for t in study.trials)
    scores, compared, _ = importances(study, ["avg_gap"])
    assert top(scores["avg_gap"]) == "y" and compared == chosen.label   # at epoch 1, y is what varies


def stub_trial(trial_id: str, status: str, *, epoch: int, planned: int, value: float) -> Trial:
    trial = Trial("unlearn_trial", config={"epochs": planned}, trial_id=trial_id, stub=True)
    trial.status = status
    trial.run_metadata.last_result = {"avg_gap": value, "epoch": epoch, "planned_epochs": planned}
    return trial


def test_the_consoles_best_line_names_the_best_completed_trial():
    table = ProgressTable(metrics=["avg_gap"], params=[], mode="min")
    running = stub_trial("running1", Trial.RUNNING, epoch=1, planned=5, value=0.5)
    stopped = stub_trial("stopped1", Trial.TERMINATED, epoch=1, planned=5, value=1.0)
    assert table.best_line([running, stopped]) == "best so far: no trial has run all its epochs yet"
    finished = [stub_trial("done0001", Trial.TERMINATED, epoch=5, planned=5, value=4.0),
                stub_trial("done0002", Trial.TERMINATED, epoch=5, planned=5, value=3.0)]
    assert table.best_line([running, stopped, *finished]) == \
        "best completed trial so far: done0002, avg_gap 3 (of 2 completed)"


def test_export_ranks_every_trial_at_its_last_epoch_and_cuts_an_asha_stopped_winner(tmp_path):
    """export's rule, unlike the figures': an ASHA-stopped trial can win, exported at the epoch it was
    ranked at (its weights and metrics are those of that epoch)."""
    base = UnlearnConfig(epochs=5).to_dict()
    rows = [{**base, "trial_id": "finished", "mlflow_run_id": "r1", "avg_gap": 2.0, "epoch": 5.0},
            {**base, "trial_id": "stopped", "mlflow_run_id": "r2", "avg_gap": 1.0, "epoch": 2.0}]
    winner = pareto_front(rows, [["avg_gap", "min"]])
    assert [r["trial_id"] for r in winner] == ["stopped"]
    state = SweepState(name="s", storage=str(tmp_path), space_file="", tracking_uri="", experiment_id="",
                       parent_run_id="", trials=2, concurrency=1, cpus_per_trial=1.0, gpus_per_trial=0.0,
                       checkpoint_every=1, address=None, seed=0, objectives=[["avg_gap", "min"]])
    path = write_config(winner[0], tmp_path / "best.yaml", state, title="Best trial")
    assert "# ASHA stopped it after epoch 2 of 5" in path.read_text()
    assert yaml.safe_load(path.read_text())["epochs"] == 2
