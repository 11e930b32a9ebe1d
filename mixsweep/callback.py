"""The driver side of the MLflow records: no child run stays RUNNING, and each ends with the status its
ending means (mixsweep/endings.py).

A trial closes its own run FINISHED after its last epoch (FAILED, tagged, when it diverged). Two endings it
cannot record itself:
- ASHA stopped it early. Its function is blocked in `tune.report` and never runs again, so
  `on_trial_complete` finds the run still RUNNING: it logs the model of the trial's last checkpoint
  (tagged with that epoch) and closes the run FINISHED, tagged mixsweep.stopped_early=true and
  mixsweep.stopped_at_epoch=N (the epoch of its last result). FINISHED as Ray Tune's own MLflow callback
  ends such a trial: it did what it was asked; KILLED is a person's stop, FAILED an error.
- It failed. `on_trial_error` closes the run FAILED (with the last checkpoint's model when there is one);
  a trial that failed before opening its run gets one, so every trial has a child run.
`close_leftovers` does the same for every trial after `fit()` returns (a callback error must not stop
the sweep, so the callback only warns and the pass after `fit()` catches up), marks the runs of
trials an interruption (Ctrl-C, `ray job stop`) left unfinished KILLED with `mixsweep.interrupted`,
which `resume` reopens, and closes KILLED (`mixsweep.lost`) the runs of trials Tune no longer knows.
"""
from __future__ import annotations

import logging
from typing import Any

from mlflow.entities import ViewType
from ray import tune
from ray.tune.experiment import Trial

from trainables import records

from .endings import DIVERGED, FAILED, STOPPED_EARLY, ending

log = logging.getLogger(__name__)

LOST_TAG = records.LOST_TAG


class CloseChildRuns(tune.Callback):
    """Closes the MLflow child runs that their trials could not close (see the module docstring)."""

    def __init__(self, *, tracking_uri: str, experiment_id: str, parent_run_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._close(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._close(trial, failed=True)

    def _close(self, trial: Trial, *, failed: bool) -> None:
        try:
            close_child(trial, failed=failed, tracking_uri=self.tracking_uri, experiment_id=self.experiment_id,
                        parent_run_id=self.parent_run_id)
        except Exception:   # noqa: BLE001 - MLflow down for a moment must not end the sweep
            log.warning("could not close the MLflow run of trial %s now; retried when the sweep ends",
                        trial.trial_id, exc_info=True)


def close_child(trial: Trial, *, failed: bool, tracking_uri: str, experiment_id: str, parent_run_id: str,
                checkpoint: Any = "trial") -> None:
    """Close the trial's child run if it is still open: FAILED when `failed`, else FINISHED (tagged stopped
    early at its last result's epoch when that is before its planned last epoch), logging the model of
    `checkpoint` first (a ray.tune.Checkpoint; by default the trial's last one; None: no model)."""
    client = records.client(tracking_uri)
    run = records.find_child_run(client, experiment_id=experiment_id, parent_run_id=parent_run_id,
                                 trial_id=trial.trial_id)
    if run is None:   # failed before it opened its run (bad data, out of memory while preparing)
        run_id = records.open_child_run(client, experiment_id=experiment_id, parent_run_id=parent_run_id,
                                        trial_id=trial.trial_id, run_name=str(trial), params=trial.config)
    elif records.is_running(run.info.status):
        run_id = run.info.run_id
    else:
        return
    checkpoint = trial.checkpoint if checkpoint == "trial" else checkpoint
    if checkpoint is not None:
        from mixunlearn.config import UnlearnConfig
        from trainables.trial import table_title   # the methods (torch): only once a model is to be logged

        cfg = UnlearnConfig.from_dict(trial.config, source=f"trial {trial.trial_id} config")
        with checkpoint.as_directory() as directory:
            records.log_checkpoint_results(tracking_uri, run_id, directory, config=cfg.to_dict(),
                                           title=table_title(cfg))
    result = trial.last_result or {}
    end = FAILED if failed else ending(result, trial.config, [])
    if end == STOPPED_EARLY:
        records.set_tag(client, run_id, records.STOPPED_TAG, "true")
        records.set_tag(client, run_id, records.STOPPED_AT_TAG, str(int(result["epoch"])))
    records.close_run(client, run_id, "FAILED" if end in (FAILED, DIVERGED) else "FINISHED")


def close_leftovers(trials: list[Trial], *, tracking_uri: str, experiment_id: str, parent_run_id: str) -> bool:
    """After fit(): close every child run still open. Returns True when every trial ended (none was
    left unfinished by an interruption)."""
    complete = True
    client = records.client(tracking_uri)
    for trial in trials:
        if trial.status in (Trial.TERMINATED, Trial.ERROR):
            close_child(trial, failed=trial.status == Trial.ERROR, tracking_uri=tracking_uri,
                        experiment_id=experiment_id, parent_run_id=parent_run_id)
        else:
            complete = False
            run = records.find_child_run(client, experiment_id=experiment_id, parent_run_id=parent_run_id,
                                         trial_id=trial.trial_id)
            if run is not None and records.is_running(run.info.status):
                client.set_tag(run.info.run_id, records.INTERRUPTED_TAG, "true")
                records.close_run(client, run.info.run_id, "KILLED")
    close_lost_runs(client, {t.trial_id for t in trials}, experiment_id=experiment_id, parent_run_id=parent_run_id)
    return complete


def close_lost_runs(client, known: set[str], *, experiment_id: str, parent_run_id: str) -> None:
    """Close KILLED the open runs of trials Tune no longer knows: a driver killed before Tune saved its
    state loses the trials it had started since, and the resumed sweep draws new ones instead."""
    runs = client.search_runs([experiment_id], filter_string=f"{records.trial_runs_of(parent_run_id)} "
                              "AND attributes.status = 'RUNNING'", run_view_type=ViewType.ALL)
    for run in runs:
        if run.data.tags.get(records.TRIAL_TAG) not in known:
            client.set_tag(run.info.run_id, LOST_TAG, "true")
            records.close_run(client, run.info.run_id, "KILLED")
