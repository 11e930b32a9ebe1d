"""ASHA whose stops are Optuna prunes the moment it decides them, and whose rungs survive `mixsweep resume`.

    scheduler = RecordedASHA(time_attr="epoch", metric="avg_gap", mode="min", max_t=5, grace_period=1)

Two gaps of Ray Tune's ASHAScheduler (Ray 2.60) that a killed driver exposes:
- Its decision and the searcher's record of it are apart: Tune queues a STOP, persists the trial's
  checkpoint, and only then calls the searcher's on_trial_complete. A driver killed in between leaves the
  trial RUNNING in Optuna, and `resume` would train it on. Here the searcher is told (PRUNED, with the
  value it was stopped on) inside on_trial_result, before the decision leaves the scheduler.
- Tune's experiment snapshot keeps no scheduler state (TuneController.__getstate__ drops _scheduler_alg):
  a restored ASHA starts with empty rungs and would let every resumed trial through. Here a restored
  scheduler rebuilds its rungs from the Optuna study before the first trial is added: each trial's
  intermediate value at a rung's epoch is what ASHA recorded there (trials report at exactly the rung
  epochs, sweep.asha_rungs). The order results arrived in decided past stops, which the study records
  as PRUNED; later cutoffs depend only on the recorded values.
The searcher is reached through the controller's `search_alg`, which Tune hands every scheduler.
"""
from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from .endings import STOPPED_EARLY, ending
from .optuna_search import TRIAL_ID_ATTR, ResumableOptunaSearch


class RecordedASHA(ASHAScheduler):
    """ASHAScheduler that tells the sweep's searcher of each early stop at once and rebuilds its rungs
    from the study after a restore (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rungs_restored = True   # a new sweep's study holds nothing to restore

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._rungs_restored = False  # unpickled: Tuner.restore, the rungs are to be rebuilt

    def on_trial_add(self, tune_controller, trial) -> None:
        if not self._rungs_restored:
            self._rungs_restored = True
            searcher = optuna_searcher(tune_controller)
            if searcher is not None:
                self.restore_rungs(searcher._ot_study)
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and ending(result, trial.config, [self._metric]) == STOPPED_EARLY:
            searcher = optuna_searcher(tune_controller)
            if searcher is not None:
                searcher.stopped_early(trial.trial_id, result)
        return action

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._trial_info.pop(trial.trial_id, None)

    def restore_rungs(self, study) -> None:
        """Each rung's recorded values from the study's intermediate values at the rung's epoch."""
        for frozen in study.get_trials(deepcopy=False):
            trial_id = frozen.user_attrs.get(TRIAL_ID_ATTR, f"optuna-{frozen.number}")
            for bracket in self._brackets:
                for milestone, recorded in bracket._rungs:
                    value = frozen.intermediate_values.get(int(milestone))
                    if value is not None:
                        recorded[trial_id] = self._metric_op * value
            self._num_stopped += frozen.state.name == "PRUNED"


def optuna_searcher(tune_controller) -> ResumableOptunaSearch | None:
    """The sweep's searcher under Tune's SearchGenerator and ConcurrencyLimiter, or None (an ablation's)."""
    searcher = getattr(tune_controller, "search_alg", None)
    while searcher is not None and not isinstance(searcher, ResumableOptunaSearch):
        searcher = getattr(searcher, "searcher", None)
    return searcher
