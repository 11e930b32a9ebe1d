"""One record after a kill: before `mixsweep resume` restores a sweep, Tune's snapshot, the Optuna study
and MLflow are made to agree, from the trials' own records.

    notes = reconcile(state)     # in resume_sweep, before Tuner.restore

Why they disagree. Optuna (every ask and tell) and MLflow (every run, epoch and end) are written the moment
something happens. Tune's experiment snapshot (trials, searcher, trial count) is written every ~10 s and
when trials have checkpointed twice (ray/tune/execution/experiment_state.py, _ExperimentCheckpointManager,
Ray 2.60), then copied to the storage in the background. That period cannot be tied to trial starts:
TUNE_GLOBAL_CHECKPOINT_S is a period, and Tune gives schedulers and callbacks no handle on the snapshot
(the controller they see exposes stop_trial, not checkpoint). A driver killed between two snapshots
therefore leaves trials the study and MLflow hold but the snapshot never had, and trials the snapshot
holds running that had ended; restored as it is, Tune drew new trials past the budget and left the
others RUNNING in Optuna and MLflow forever.

What is done, trial by trial (the Optuna trial's `mixsweep.trial_id` joins the three records):
- In the snapshot, unfinished there, but PRUNED or FAIL (not diverged) in the study: ASHA stopped it, or
  Tune gave up on its errors, after the snapshot. It is finished in the snapshot too (TERMINATED at its
  stop epoch with MLflow's metrics of that epoch, or ERROR), and its run closed as the callback would
  have (FINISHED with the stop tags and the model of that epoch's checkpoint, or FAILED). Restored
  unfinished, Tune would train it on. (COMPLETE, or diverged: the trial ended by itself; restarted, it
  reports the result MLflow recorded and returns.)
- In the snapshot finished, RUNNING in the study (Optuna never heard): told as its last result says.
- Not in the snapshot (started after it):
  - its run ended (finished, stopped early, diverged): added to the snapshot TERMINATED with the run's
    result, and told so if the study had not heard;
  - its run was open (the kill interrupted it): closed for good, Optuna FAIL (ending "lost"), MLflow
    KILLED tagged mixsweep.lost, Tune ERROR. Resuming it as the same trial would need Tune's record of
    its checkpoints, which only the snapshot keeps;
  - it has no run (asked, never started): left RUNNING in the study; the searcher hands it to the next
    new trial with its parameters as drawn (mixsweep/optuna_search.py).
  The snapshot's trial count then counts every added trial: the budget is the trials that were started.
Runs under the sweep's parent that belong to none of the study's trials (a benchmark's seed runs) are
not this sweep's trials and are left alone.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pyarrow.fs as pafs
from optuna.trial import FrozenTrial, TrialState

from trainables import records

from . import state as sweep_state
from .callback import close_child
from .endings import DIVERGED, FAILED, LOST, ending, finite
from .optuna_search import ENDING_ATTR, EPOCH_ATTR, TRIAL_ID_ATTR, tell

EXPERIMENT_STATE = "experiment_state-"     # Tune's snapshot file: experiment_state-<session>.json
SEARCH_STATE = "search_gen_state-"         # the search generator's: trial count, concurrency limiter
FINISHED = ("TERMINATED", "ERROR")


# ---- Tune's snapshot, read and rewritten through pyarrow (a folder or a bucket) ---------------------------

@dataclass
class Snapshot:
    fs: pafs.FileSystem
    folder: str                        # the experiment folder in `fs`
    document: dict[str, Any]           # the newest experiment_state file, as JSON
    path: str
    trials: dict[str, list[dict]]      # trial id -> [its state, its run metadata], decoded one level

    @classmethod
    def read(cls, experiment_path: str) -> Snapshot | None:
        fs, folder = pafs.FileSystem.from_uri(experiment_path if "://" in experiment_path
                                              else str(Path(experiment_path).resolve()))
        path = newest(fs, folder, EXPERIMENT_STATE)
        if path is None:
            return None
        with fs.open_input_stream(path) as stream:
            document = json.loads(stream.read())
        trials = {}
        for state_json, meta_json in document["trial_data"]:
            state = json.loads(state_json)
            trials[state["trial_id"]] = [state, json.loads(meta_json)]
        return cls(fs=fs, folder=folder, document=document, path=path, trials=trials)

    def status(self, trial_id: str) -> str:
        return self.trials[trial_id][0]["status"]

    def last_result(self, trial_id: str) -> dict[str, Any]:
        return self.trials[trial_id][1].get("last_result") or {}

    def finish(self, trial_id: str, status: str, result: dict[str, Any]) -> None:
        state, meta = self.trials[trial_id]
        state["status"] = status
        if result:
            meta["last_result"] = {**meta.get("last_result", {}), **result}
            meta["last_result_time"] = time.time()

    def add(self, trial_id: str, config: dict[str, Any], status: str, result: dict[str, Any]) -> None:
        """A trial the snapshot never had, built by Tune's own Trial class like the snapshot's first one."""
        from ray.tune.experiment.trial import Trial

        template = Trial.from_json_state(json.dumps(next(iter(self.trials.values()))[0]), stub=True)
        trial = Trial(template.trainable_name, config=config, trial_id=trial_id, storage=template.storage,
                      evaluated_params=template.evaluated_params and {k: config.get(k) for k in template.evaluated_params},
                      experiment_tag=f"{len(self.trials) + 1}", placement_group_factory=template.placement_group_factory,
                      trial_dirname_creator=template.trial_dirname_creator, stub=True)
        trial.placement_group_factory = template.placement_group_factory   # set by Tune when it adds a trial
        trial.relative_logdir = trial.custom_dirname or f"{trial.trainable_name}_{trial_id}"
        trial.storage.trial_dir_name = trial.relative_logdir
        trial.set_status(status)
        trial.run_metadata.last_result = result
        trial.run_metadata.last_result_time = time.time()
        state_json, meta_json = trial.get_json_state()
        self.trials[trial_id] = [json.loads(state_json), json.loads(meta_json)]
        # Tune's results file of the trial, which its driver never wrote: ExperimentAnalysis reads it.
        results = f"{self.folder}/{trial.relative_logdir}/result.json"
        if self.fs.get_file_info(results).type == pafs.FileType.NotFound:
            self.fs.create_dir(f"{self.folder}/{trial.relative_logdir}", recursive=True)
            with self.fs.open_output_stream(results) as stream:
                stream.write((json.dumps(result, default=str) + "\n").encode())

    def write(self, finished_now: set[str]) -> None:
        """Write the snapshot back (in place, atomically), with the search generator's trial count set to
        the trials it holds and the trials finished here no longer live in its concurrency limiter."""
        import ray.cloudpickle as cloudpickle

        from ray.tune.experiment.trial import Trial

        self.document["trial_data"] = [[json.dumps(s, indent=2), json.dumps(m, indent=2)] for s, m in self.trials.values()]
        for state_json, _ in self.document["trial_data"]:
            Trial.from_json_state(state_json, stub=True)   # Tune starts afresh on a state it cannot read: check
        replace(self.fs, self.path, json.dumps(self.document).encode())
        search_path = newest(self.fs, self.folder, SEARCH_STATE)
        if search_path is None:
            return
        with self.fs.open_input_stream(search_path) as stream:
            search = cloudpickle.loads(stream.read())
        search["counter"] = max(search["counter"], len(self.trials))
        limiter = search.get("name:ConcurrencyLimiter")
        if limiter is not None:
            for trial_id in finished_now & limiter["live_trials"]:
                limiter["live_trials"].discard(trial_id)
                limiter["num_unfinished_live_trials"] = max(0, limiter["num_unfinished_live_trials"] - 1)
        replace(self.fs, search_path, cloudpickle.dumps(search))


def newest(fs: pafs.FileSystem, folder: str, prefix: str) -> str | None:
    names = [info.path for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
             if Path(info.path).name.startswith(prefix)]
    return max(names, default=None)


def replace(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    temporary = f"{path}.reconciling"
    with fs.open_output_stream(temporary) as stream:
        stream.write(data)
    fs.move(temporary, path)


# ---- the reconciliation --------------------------------------------------------------------------------

def reconcile(state: sweep_state.SweepState) -> list[str]:
    """Make the three records of the sweep `state` agree (see the module docstring); returns a line per
    trial it changed, for the console. A sweep without an Optuna study (an ablation) is left alone."""
    study_file = state.local_dir / "optuna.db"
    snapshot = Snapshot.read(state.experiment_path)
    if not state.objectives or not study_file.is_file() or snapshot is None or not snapshot.trials:
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=state.name, storage=state.optuna_url)
    metrics = [metric for metric, _ in state.objectives]
    client = records.client(state.tracking_uri)
    notes: list[str] = []
    finished_now: set[str] = set()
    for frozen in study.get_trials(deepcopy=False):
        trial_id = frozen.user_attrs.get(TRIAL_ID_ATTR)
        if trial_id is None:
            continue   # enqueued and never asked, or a study written before issue 20
        run = records.find_child_run(client, experiment_id=state.experiment_id, parent_run_id=state.parent_run_id,
                                     trial_id=trial_id)
        fixer = Fixer(state, study, client, snapshot, frozen, trial_id, run, metrics)
        note = fixer.in_snapshot() if trial_id in snapshot.trials else fixer.not_in_snapshot()
        if note:
            notes.append(f"trial {trial_id}: {note}")
            finished_now.add(trial_id)
    if finished_now:
        snapshot.write(finished_now)
    return notes


@dataclass
class Fixer:
    """The three records of one trial, and what makes them agree."""
    state: sweep_state.SweepState
    study: optuna.Study
    client: Any
    snapshot: Snapshot
    frozen: FrozenTrial
    trial_id: str
    run: Any                      # its MLflow run, or None
    metrics: list[str]

    def in_snapshot(self) -> str:
        status, frozen = self.snapshot.status(self.trial_id), self.frozen
        told = frozen.user_attrs.get(ENDING_ATTR)
        errored = frozen.state == TrialState.FAIL and told == FAILED and not (self.run and records.ended(self.run))
        if status not in FINISHED and (frozen.state == TrialState.PRUNED or errored):
            if frozen.state == TrialState.PRUNED:
                result = self.result_at(int(frozen.user_attrs.get(EPOCH_ATTR, frozen.last_step or 0)))
                self.close_run(result, failed=False)
                self.snapshot.finish(self.trial_id, "TERMINATED", result)
                return f"stopped early at epoch {result.get('epoch')} after Tune's last snapshot: ended there too"
            self.close_run({}, failed=True)
            self.snapshot.finish(self.trial_id, "ERROR", {})
            return "failed after Tune's last snapshot: ended there too"
        if status in FINISHED and frozen.state == TrialState.RUNNING:
            result = self.snapshot.last_result(self.trial_id)
            self.tell(ending(result, self.config(), self.metrics, error=status == "ERROR"), result)
            return ""   # the snapshot already holds it finished
        return ""

    def not_in_snapshot(self) -> str:
        run, frozen = self.run, self.frozen
        if run is None:
            return ""   # asked, never started: the searcher hands it out again (RUNNING) or it ended unseen
        config = self.config()
        interrupted = run.info.status in ("RUNNING", "SCHEDULED", "KILLED") and not records.ended(run)
        if interrupted and frozen.state != TrialState.PRUNED:
            # The kill interrupted it: closed for good in all three records.
            result = {**self.result_at(int(run.data.metrics.get("epoch", 0))), **self.run_times()}
            records.set_tag(self.client, run.info.run_id, records.LOST_TAG, "true")
            if records.is_running(run.info.status):
                records.close_run(self.client, run.info.run_id, "KILLED")
            if frozen.state == TrialState.RUNNING:
                self.tell(LOST, result)
            self.snapshot.add(self.trial_id, config, "ERROR", result)
            return ("running when the driver was killed, after Tune's last snapshot: closed (Optuna FAIL, "
                    "MLflow KILLED lost)")
        if interrupted:   # ASHA's stop reached the study, the driver died before closing the run
            result = {**self.result_at(int(frozen.user_attrs.get(EPOCH_ATTR, frozen.last_step or 0))),
                      **self.run_times()}
            self.close_run(result, failed=False)
        else:
            result = {**records.recorded_result(self.client, run), **self.run_times()}
        if run.data.tags.get(records.DIVERGED_TAG) == "true":
            end = DIVERGED
        elif run.info.status == "FAILED":
            end = FAILED
        else:
            end = ending(result, config, self.metrics)
        if frozen.state == TrialState.RUNNING:
            self.tell(end, result)
        self.snapshot.add(self.trial_id, config, "ERROR" if end == FAILED else "TERMINATED", result)
        return f"{end.replace('_', ' ')} after Tune's last snapshot: added to it"

    # ---- helpers ----

    def config(self) -> dict[str, Any]:
        """The trial's flat config (the Tune config): its run's params, typed."""
        from mixunlearn.config import UnlearnConfig

        if self.trial_id in self.snapshot.trials:
            return self.snapshot.trials[self.trial_id][0]["config"]
        return UnlearnConfig.from_params(self.run.data.params, source=f"run {self.run.info.run_id}").to_dict()

    def result_at(self, epoch: int) -> dict[str, Any]:
        """The trial's result at `epoch` as Tune would hold it: MLflow's metrics of that epoch."""
        result = records.metrics_at(self.client, self.run, epoch) if self.run is not None and epoch else {}
        planned = self.frozen.user_attrs.get("mixsweep.planned_epochs")
        return {**result, "epoch": epoch, "trial_id": self.trial_id, "done": True,
                **({"planned_epochs": planned} if planned else {})}

    def run_times(self) -> dict[str, Any]:
        info = self.run.info
        seconds = ((info.end_time or int(time.time() * 1000)) - info.start_time) / 1000 if info.start_time else math.nan
        return {"trial_id": self.trial_id, "done": True, "time_total_s": seconds, "config": self.config()}

    def tell(self, end: str, result: dict[str, Any]) -> None:
        """Tell the study `end`, with the result's value as the intermediate value of its epoch first."""
        ot_trial = optuna.Trial(self.study, self.frozen._trial_id)
        epoch, values = result.get("epoch"), [result.get(m) for m in self.metrics]
        if (len(values) == 1 and finite(epoch) and finite(values[0])
                and int(epoch) not in self.frozen.intermediate_values):
            ot_trial.report(float(values[0]), step=int(epoch))
        tell(self.study, ot_trial, end, result, self.metrics)

    def close_run(self, result: dict[str, Any], *, failed: bool) -> None:
        """Close the trial's open run as the callback would have: with the model of its checkpoint at the
        result's epoch, FINISHED (stop tags when early) or FAILED."""
        if self.run is None or not records.is_running(self.run.info.status):
            return
        trial = SimpleNamespace(trial_id=self.trial_id, config=self.config(), last_result=result, checkpoint=None)
        close_child(trial, failed=failed, tracking_uri=self.state.tracking_uri, experiment_id=self.state.experiment_id,
                    parent_run_id=self.state.parent_run_id,
                    checkpoint=None if failed else checkpoint_at(self.snapshot, self.trial_id, result.get("epoch")))


def checkpoint_at(snapshot: Snapshot, trial_id: str, epoch: Any):
    """The trial's checkpoint (a ray.tune.Checkpoint) of `epoch` in its folder, else its latest one before
    that epoch, else None."""
    from ray import tune

    if not finite(epoch):
        return None
    found = []
    for folder in snapshot.fs.get_file_info(pafs.FileSelector(snapshot.folder, allow_not_found=True)):
        if folder.type != pafs.FileType.Directory or not folder.path.endswith(f"_{trial_id}"):
            continue
        for entry in snapshot.fs.get_file_info(pafs.FileSelector(folder.path, allow_not_found=True)):
            if Path(entry.path).name.startswith("checkpoint_"):
                try:
                    with snapshot.fs.open_input_stream(f"{entry.path}/meta.json") as stream:
                        found.append((int(json.loads(stream.read())["epoch"]), entry.path))
                except (OSError, KeyError, ValueError):
                    continue
    usable = [(e, path) for e, path in found if e <= int(epoch)]
    if not usable:
        return None
    return tune.Checkpoint(path=max(usable)[1], filesystem=snapshot.fs)
