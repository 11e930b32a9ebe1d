"""Which trials a figure compares: one fidelity, said in the figure.

    chosen = one_fidelity(study)          # the completed trials, else every trial at one rung
    chosen.study                          # an in-memory Optuna study of just those, for fANOVA
    chosen.label                          # "the 12 completed trials" / "every trial at epoch 2 (9 trials)"

A value a trial reported after epoch 1, before forgetting has happened, is not comparable with another's
after epoch 5 (mixsweep/endings.py). So the importances, the Pareto front, the history's "best so far"
and the console's best line each compare trials at one fidelity:
- the completed trials (Optuna COMPLETE: every one ran its configuration), when there are enough of
  them (`MIN_TRIALS`; fANOVA needs two);
- else, for one objective, every trial at the deepest rung at least that many reached: each trial's
  intermediate value at that epoch, completed and stopped trials alike (they all ran those epochs).
`mixsweep export` keeps its own rule: the best trial at the epoch of its last result, ASHA's cut included.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

MIN_TRIALS = 2


@dataclass
class Fidelity:
    trials: list[FrozenTrial]      # the compared trials, each with `values` at this fidelity
    label: str                     # what the figure says it compares
    directions: tuple              # the study's StudyDirections
    epoch: int | None = None       # the rung's epoch; None: the completed trials

    @property
    def study(self) -> optuna.Study | None:
        """These trials as an in-memory study (fANOVA reads a study), or None when there are none."""
        if not self.trials:
            return None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(directions=[d.name.lower() for d in self.directions])
        study.add_trials(self.trials)
        return study


def one_fidelity(study: optuna.Study, *, min_trials: int = MIN_TRIALS) -> Fidelity:
    """The completed trials when at least `min_trials`, else every trial at the deepest rung as many
    reached (one objective only: Optuna keeps no intermediate values for several)."""
    directions = tuple(study.directions)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE and t.values
                and all(math.isfinite(v) for v in t.values)]
    chosen = Fidelity(trials=complete, directions=directions,
                      label=f"the {len(complete)} completed trial{'s' if len(complete) != 1 else ''}")
    if len(complete) >= min_trials or len(directions) > 1:
        return chosen
    ran = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    for epoch in sorted({step for t in ran for step in t.intermediate_values}, reverse=True):
        at = [t for t in ran if math.isfinite(t.intermediate_values.get(epoch, math.nan))]
        if len(at) >= min_trials:
            return Fidelity(trials=[at_epoch(t, epoch) for t in at], directions=directions, epoch=epoch,
                            label=f"every trial at epoch {epoch} ({len(at)} trials; {len(complete)} completed)")
    return chosen


def at_epoch(trial: FrozenTrial, epoch: int) -> FrozenTrial:
    """The trial as a COMPLETE trial worth its intermediate value at `epoch`."""
    return optuna.trial.create_trial(params=trial.params, distributions=trial.distributions,
                                     value=trial.intermediate_values[epoch], user_attrs=trial.user_attrs)


def legacy(study: optuna.Study) -> bool:
    """Whether the study was recorded before trials' endings were told (issue 20): its ASHA-stopped trials
    are COMPLETE there, worth the value of the epoch they were stopped at."""
    from .optuna_search import ENDING_ATTR

    return any(t.state == TrialState.COMPLETE and ENDING_ATTR not in t.user_attrs for t in study.trials)
