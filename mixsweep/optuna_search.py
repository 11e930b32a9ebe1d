"""The sweep's Optuna searcher: Ray Tune's OptunaSearch, telling the study what each trial's end means.

    searcher = ResumableOptunaSearch(space=..., metric="avg_gap", mode="min", budget=8, study_name=..., storage=...)

Ray's OptunaSearch (ray/tune/search/optuna/optuna_search.py, Ray 2.60) tells Optuna a trial COMPLETE with
whatever value it last reported, and reports intermediate values at Tune's `training_iteration`, never for
the result ASHA stops a trial on (Tune skips the searcher's on_trial_result for a STOP). So a trial ASHA
stopped after epoch 1 became a COMPLETE trial worth its epoch-1 value, mostly without intermediate values,
and a diverged trial's NaN made `tell` raise (Ray only logs it), leaving it RUNNING. Here
(mixsweep/endings.py has the rule):
- every reported value is an intermediate value at its epoch (step = epoch), the one a stop ends on too;
- a trial that ran all its epochs is told COMPLETE with its last value(s); one stopped earlier PRUNED
  (Optuna then gives it its last intermediate value as value); a diverged or failed one FAIL;
- several objectives: Optuna keeps no intermediate values there, so each epoch's values go into a user
  attribute `mixsweep.epoch_<e>_values`; the same states otherwise;
- each Optuna trial carries its Tune trial id (`mixsweep.trial_id`), its ending and epochs, and its MLflow run.

How TPE reads PRUNED trials (optuna/samplers/_tpe/sampler.py `_split_trials`, Optuna 5.1): the COMPLETE
trials are ranked by value and fill the "good" group first (the best n_below = gamma(n) of all trials);
pruned trials only fill the slots left, ranked by how far they got (the deepest step first) and then by
their value at that step; the rest, running trials included, are the "bad" group. So a trial stopped at
epoch 1 counts as evidence against its region, not as a competitor of finished trials: exactly how TPE
treats the trials Optuna's own pruners stop.

After a killed driver (mixsweep/reconcile.py does the rest at `resume`):
- a trial told finished already (by the scheduler at ASHA's stop, or before the kill) is not told again;
  a restarted trial re-reporting its recorded result is ignored;
- a trial the study holds RUNNING but Tune's snapshot never recorded (asked just before the kill; it never
  opened a run: the reconciliation closed the ones that did) is handed out again for the next suggestion,
  its parameters as drawn, instead of asking Optuna for a new one;
- the study never holds more trials than the sweep's budget: the trials a driver started count, also
  those Tune's snapshot missed.
"""
from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from .endings import COMPLETED, STOPPED_EARLY, ending, finite

TRIAL_ID_ATTR = "mixsweep.trial_id"        # the Tune trial id of an Optuna trial (and of its MLflow run)
ENDING_ATTR = "mixsweep.ending"            # endings.COMPLETED, STOPPED_EARLY, DIVERGED, FAILED or LOST
EPOCH_ATTR = "mixsweep.epoch"              # the epoch of the result it was told with
PLANNED_ATTR = "mixsweep.planned_epochs"   # the epochs its config trains
RUN_ATTR = "mixsweep.mlflow_run_id"
STATES = {COMPLETED: TrialState.COMPLETE, STOPPED_EARLY: TrialState.PRUNED}   # any other ending: FAIL


def epoch_values_attr(epoch: int) -> str:
    """The user attribute of a multi-objective trial's values at `epoch`."""
    return f"mixsweep.epoch_{epoch}_values"


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch whose study states mean what they say (see the module docstring). `budget`: the
    sweep's trials; None = no cap of its own (Tune's num_samples alone)."""

    def __init__(self, *args: Any, budget: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._budget = budget
        self._reported: dict[str, list[int]] = {}    # trial id -> epochs already told as intermediate values
        self._configs: dict[str, dict[str, Any]] = {}

    # Searchers pickled before these attributes existed (a sweep started by older code, resumed): defaults.
    def _state(self, name: str, default: Any) -> Any:
        return self.__dict__.setdefault(name, default)

    @property
    def metrics(self) -> list[str]:
        return list(self.metric) if isinstance(self.metric, list) else [self.metric]

    # ---- suggestions -------------------------------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if trial_id not in self._ot_trials:
            orphan = self._unclaimed_trial()
            if orphan is not None:
                self._ot_trials[trial_id] = orphan
            elif self._state("_budget", None) is not None and self._started() >= self._budget:
                return Searcher.FINISHED
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            self._ot_trials[trial_id].set_user_attr(TRIAL_ID_ATTR, trial_id)
            self._state("_configs", {})[trial_id] = config
        return config

    def _unclaimed_trial(self) -> optuna.Trial | None:
        """The oldest RUNNING trial of the study that no Tune trial holds (asked by a driver killed before
        Tune's snapshot recorded its trial), or None."""
        claimed = {trial.number for trial in self._ot_trials.values()}
        for frozen in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number not in claimed:
                return optuna.Trial(self._ot_study, frozen._trial_id)
        return None

    def _started(self) -> int:
        """The study's trials that were handed to Tune (those enqueued and never asked are not)."""
        return sum(t.state != TrialState.WAITING for t in self._ot_study.get_trials(deepcopy=False))

    # ---- results and endings -----------------------------------------------------------------------------

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return   # a restarted trial re-reporting what the study holds already
        self._report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        self._completed_trials.add(trial_id)
        if result:
            self._report(trial_id, result)   # the result ASHA stopped it on never reached on_trial_result
        self._tell(trial_id, result, error=error)

    def stopped_early(self, trial_id: str, result: dict) -> None:
        """ASHA has just stopped this trial on `result`: tell the study now, so that a driver killed before
        Tune itself ends the trial (and calls on_trial_complete) leaves it PRUNED all the same."""
        if trial_id in self._ot_trials and trial_id not in self._completed_trials:
            self._report(trial_id, result)
            self._tell(trial_id, result, error=False)

    def _report(self, trial_id: str, result: dict) -> None:
        epoch, values = result.get("epoch"), [result.get(metric) for metric in self.metrics]
        reported = self._state("_reported", {}).setdefault(trial_id, [])
        if not finite(epoch) or int(epoch) in reported or not all(finite(v) for v in values):
            return
        ot_trial = self._ot_trials[trial_id]
        try:
            if len(values) == 1:
                ot_trial.report(float(values[0]), step=int(epoch))
            else:
                ot_trial.set_user_attr(epoch_values_attr(int(epoch)), [float(v) for v in values])
        except optuna.exceptions.UpdateFinishedTrialError:
            pass   # finished in the study already (told at ASHA's stop, or before a resume)
        reported.append(int(epoch))

    def _tell(self, trial_id: str, result: dict | None, *, error: bool) -> None:
        ot_trial = self._ot_trials[trial_id]
        if self._ot_study._storage.get_trial(ot_trial._trial_id).state.is_finished():
            return   # told already (ASHA's stop, or a driver killed after telling it)
        end = ending(result, self._state("_configs", {}).get(trial_id, {}), self.metrics, error=error)
        tell(self._ot_study, ot_trial, end, result or {}, self.metrics)


def tell(study: optuna.Study, ot_trial: optuna.Trial, end: str, result: dict[str, Any], metrics: list[str]) -> None:
    """Record `end` (mixsweep/endings.py) of a RUNNING trial whose last result is `result`, with its
    ending, epochs and MLflow run as user attributes. Shared with the reconciliation after a kill."""
    for key, value in ((ENDING_ATTR, end), (EPOCH_ATTR, result.get("epoch")),
                       (PLANNED_ATTR, result.get("planned_epochs")), (RUN_ATTR, result.get("mlflow_run_id"))):
        if value is not None and (key in (ENDING_ATTR, RUN_ATTR) or finite(value)):
            ot_trial.set_user_attr(key, value if key in (ENDING_ATTR, RUN_ATTR) else int(value))
    state = STATES.get(end, TrialState.FAIL)
    values = [float(result[metric]) for metric in metrics] if state == TrialState.COMPLETE else None
    study.tell(ot_trial, values, state=state)
