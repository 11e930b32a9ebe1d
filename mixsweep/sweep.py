"""`mixsweep run SPACE.yaml`: an Optuna search over a sweep space, run as Ray Tune trials, recorded in MLflow.

    mixsweep run search_spaces/quick.yaml --trials 8 --concurrency 2
    mixsweep run search_spaces/paper.yaml --address auto --gpus-per-trial 0.25 --storage /shared/sweeps

The pieces, in the order `run_sweep` sets them up (everything a user can get wrong is checked before
Ray, and Ray's resources before MLflow, so a refused sweep leaves no run behind):
- Search: OptunaSearch with the space's define-by-run function, the paper defaults as the first point
  (`points_to_evaluate`), a seeded TPE sampler, and the study in <sweep>/optuna.db (study name = sweep
  name) so optuna-dashboard and parameter importances read it. One objective: TPE minimises (or
  maximises) it. Several: TPE's multi-objective mode searches the Pareto front (it beats NSGA-II at
  the few dozen trials a sweep affords; NSGA-II wants generations of ~50). The study holds each trial
  COMPLETE, PRUNED (stopped early by ASHA) or FAIL (diverged, failed, lost), never more than the
  budget (mixsweep/optuna_search.py, mixsweep/endings.py).
- Early stopping: ASHA on the per-epoch objective (time_attr "epoch", max_t = the most epochs a trial
  can run, grace period = the space's grace_epochs); its stops reach Optuna as it decides them and its
  rungs survive a resume (mixsweep/scheduler.py). With several objectives the scheduler is FIFO:
  ASHA ranks by one metric and would cut trials that are on the Pareto front through another. Under
  ASHA, trials run the CPU attackers (and report to Tune) only at its rungs (`asha_rungs`) and their
  last epoch; with FIFO, every epoch.
- Trials: `tune.with_resources` (fractional GPUs pack trials onto one card), reused actors (a fresh
  process costs ~8 s of imports and CUDA start-up, GPU.md), at most --concurrency at once.
- Records: one MLflow parent run per sweep; each trial's child run nests under it (trainables/records.py);
  CloseChildRuns closes the runs trials cannot close themselves.
- Start-up: the driver loads no torch (trainables/entry.py), loads the MLflow store's code while Ray
  starts, and a local Ray starts no idle workers (cluster.LOCAL_RAY): a trial's actor is a process of
  its own, which imports the trial (torch, the methods) as it starts.
"""
from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from search_spaces import IntParam, SweepSpace, load_space, shipped_name
from mixunlearn.config import UnlearnConfig
from trainables import TrialSettings, records, unlearn_trial

from . import cluster, state as sweep_state, tracking
from .callback import CloseChildRuns, close_leftovers
from .console import ProgressTable
from .errors import UsageError
from .optuna_search import ResumableOptunaSearch   # also where sweeps pickled before it moved find it
from .scheduler import RecordedASHA
from .ui import ui_hint


ASHA_REDUCTION = 2          # keep the better half at each rung: a sweep has dozens of trials, not thousands
CHECKPOINTS_KEPT = 2        # per trial: the latest resumes it and gives a stopped trial its model; one spare
TRIAL_RETRIES = 1           # a crashed trial (a lost node, OOM) restarts once from its last checkpoint
REPORT_EVERY_S = 15         # progress table period on the console
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class SpaceFunction:
    """The define-by-run function OptunaSearch calls per trial: the space's, with sweep-wide overrides
    (--epochs) on top. A class rather than a closure: Tune pickles the searcher to resume it."""
    space: SweepSpace
    overrides: dict[str, Any]

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        return {**self.space.define_by_run(trial), **self.overrides}


def run_sweep(space_file: str | Path, *, trials: int | None = None, concurrency: int | None = None,
              cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, address: str | None = None,
              storage: str | None = None, tracking_uri: str | None = None, name: str | None = None,
              checkpoint_every: int = 1, epochs: int | None = None, seed: int = 0,
              references: str | None = None, nested_under: str | None = None) -> sweep_state.SweepState:
    """Start a sweep and run it to the end (or to an interruption, after which `resume` continues it).
    `nested_under`: an MLflow run id the sweep's parent run nests under (a benchmark's run)."""
    # ---- the user's input, all of it, before anything starts -------------------------------------------
    space_path = Path(space_file).expanduser().resolve()
    space = load_space(space_path)
    trials = trials if trials is not None else space.sweep.trials
    concurrency = concurrency if concurrency is not None else space.sweep.concurrency
    for flag, value in (("--trials", trials), ("--concurrency", concurrency), ("--checkpoint-every", checkpoint_every)):
        if value < 1:
            raise UsageError(f"{flag} {value}: it must be a positive whole number")
    overrides: dict[str, Any] = {}
    if epochs is not None:
        if "epochs" in space.search:
            raise UsageError(f"--epochs {epochs}: {space_path} searches epochs; remove it from search or drop "
                             "the flag")
        space.config_for({"epochs": epochs})   # a SpaceError (exit 2) if the value is impossible
        overrides["epochs"] = epochs
    # A method's shipped space quick/ga is sweep "quick-ga": its files are all called quick.yaml or paper.yaml.
    name = name or (shipped_name(space_path) or space_path.stem).replace("/", "-")
    storage_path = new_storage(name, storage, kind="sweep")
    uri = tracking.tracking_uri(tracking_uri)
    cluster.check_request(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)

    # The MLflow store's code loads while Ray starts (ray.init mostly waits for its processes); the store
    # itself is touched only once Ray's resources are checked, so a refused sweep leaves no file behind.
    # ready_experiment's own import waits for this one to finish (and raises whatever it raised).
    threading.Thread(target=tracking.load_store_code, args=(uri,), name="mlflow-store-code").start()
    with cluster.connected(address):
        cluster.check_resources(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
        # ---- MLflow: the store, then the parent run -----------------------------------------------------
        experiment_id = tracking.ready_experiment(uri)
        state = sweep_state.SweepState(
            name=name, storage=storage_path, space_file=str(space_path), tracking_uri=uri,
            experiment_id=experiment_id, parent_run_id="", trials=trials, concurrency=concurrency,
            cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, checkpoint_every=checkpoint_every,
            address=address, seed=seed, objectives=[[o.metric, o.mode] for o in space.objectives],
            scheduler="asha" if len(space.objectives) == 1 else "fifo", epochs_override=epochs,
            cache_dir=os.environ.get("MIXSWEEP_CACHE"),
            references=sweep_state.resolve_references(references, storage_path),
            attack_epochs=asha_rungs(space, epochs) if len(space.objectives) == 1 else None,
            curve_budget=space.sweep.curve_budget, nested_under=nested_under)
        state.parent_run_id = open_parent_run(state, space, nested_under=nested_under)
        with parent_closed_on_error(state):
            state.save()
            print(f"sweep {name}: {trials} trials, {concurrency} at a time, {cpus_per_trial:g} CPU + "
                  f"{gpus_per_trial:g} GPU each; Tune results in {state.experiment_path}; MLflow {uri} "
                  f"(parent run {state.parent_run_id})", flush=True)
            print(f"MLflow UI: {ui_hint(uri, experiment_id, state.parent_run_id)}", flush=True)
            fit(make_tuner(state, space, overrides), state)
    return state


@contextmanager
def parent_closed_on_error(state: sweep_state.SweepState) -> Iterator[None]:
    """An error of the driver itself (not of a trial) closes the parent run FAILED, KILLED on Ctrl-C,
    instead of leaving it RUNNING; `resume` reopens it."""
    try:
        yield
    except BaseException as error:
        client = records.client(state.tracking_uri)
        if records.is_running(records.run_status(client, state.parent_run_id)):
            records.close_run(client, state.parent_run_id, "KILLED" if isinstance(error, KeyboardInterrupt)
                              else "FAILED")
        raise


def new_storage(name: str, storage: str | None, *, kind: str) -> str:
    """The resolved storage for a new sweep or ablation called `name`, refusing a bad or taken name."""
    if not NAME.match(name):
        raise UsageError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    storage_path = sweep_state.resolve_storage(storage)
    folder = sweep_state.local_dir(storage_path, name)
    if (folder / sweep_state.STATE_FILE).exists() or (folder / "tuner.pkl").exists():
        raise UsageError(f"{kind} {name!r} already exists in {folder}; continue it with `mixsweep resume {name}` "
                         "or start a new one with --name")
    return storage_path


def open_parent_run(state: sweep_state.SweepState, space: SweepSpace, *, nested_under: str | None = None) -> str:
    """The sweep's parent run: its settings as params, the space file, the commit, the cluster's resources;
    nested under the run `nested_under` (MLflow's parent tag) when given."""
    client = records.client(state.tracking_uri)
    settings = {
        "sweep_name": state.name, "space_file": state.space_file, "trials": state.trials,
        "concurrency": state.concurrency, "cpus_per_trial": state.cpus_per_trial,
        "gpus_per_trial": state.gpus_per_trial, "checkpoint_every": state.checkpoint_every,
        "epochs_override": state.epochs_override, "storage": state.storage, "address": state.address or "local",
        "reference_store": state.references,
        "sampler": "TPE", "sampler_seed": state.seed, "scheduler": state.scheduler,
        "grace_epochs": space.sweep.grace_epochs, "max_epochs": max_epochs(space, state.epochs_override),
        "objectives": ",".join(f"{m}:{d}" for m, d in state.objectives), "searched": ",".join(space.search),
        **{f"cluster_{k}": v for k, v in cluster.resources_summary().items()},
    }
    nesting = {records.PARENT_TAG: nested_under} if nested_under else {}
    run_id = records.open_run(client, experiment_id=state.experiment_id, run_name=state.name, kind="sweep",
                              params=settings, tags={"mixsweep.sweep_name": state.name, **nesting,
                                                     **tracking.git_commit()})
    client.log_artifact(run_id, state.space_file, artifact_path="space")
    return run_id


def max_epochs(space: SweepSpace, epochs_override: int | None) -> int:
    """The most epochs any trial of the space can run: ASHA's max_t (every searched *epochs field at its
    top, for a method of several stages such as LAF+R's head_epochs)."""
    top = {name: param.high if isinstance(param, IntParam) else max(param.choices)
           for name, param in space.search.items() if name.endswith("epochs")}
    if epochs_override:
        top["epochs"] = epochs_override
    return UnlearnConfig.from_dict(space.config_for(top)).unlearn_epochs


def asha_rungs(space: SweepSpace, epochs_override: int | None) -> list[int]:
    """The epochs at which ASHA compares trials: grace * reduction^k, k < log(max_t / grace) / log(reduction)
    + 1 (Ray's async_hyperband._Bracket, one bracket). Trials run their CPU attackers there and at their
    last epoch only: ASHA reads the objective at no other epoch."""
    top = max_epochs(space, epochs_override)
    grace = min(space.sweep.grace_epochs, top)
    count = int(np.log(top / grace) / np.log(ASHA_REDUCTION) + 1)
    return [grace * ASHA_REDUCTION ** k for k in range(count)]


def make_tuner(state: sweep_state.SweepState, space: SweepSpace, overrides: dict[str, Any]) -> tune.Tuner:
    metrics = [m for m, _ in state.objectives]
    modes = [d for _, d in state.objectives]
    single = len(metrics) == 1
    searcher = ResumableOptunaSearch(
        space=SpaceFunction(space, overrides),
        metric=metrics[0] if single else metrics, mode=modes[0] if single else modes,
        points_to_evaluate=space.points_to_evaluate(),
        sampler=optuna.samplers.TPESampler(seed=state.seed),
        study_name=state.name, storage=optuna.storages.RDBStorage(state.optuna_url), budget=state.trials)
    if single:
        top = max_epochs(space, state.epochs_override)
        scheduler = RecordedASHA(time_attr="epoch", metric=metrics[0], mode=modes[0], max_t=top,
                                 grace_period=min(space.sweep.grace_epochs, top), reduction_factor=ASHA_REDUCTION)
    else:
        scheduler = FIFOScheduler()
    # The first searched parameters of the space file (console.py says why those).
    reporter = ProgressTable(metrics=metrics, mode=modes[0] if single else None,
                             params=[(name, name) for name in space.search], max_report_frequency=REPORT_EVERY_S)
    return tune.Tuner(
        trainable_for(state),
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=state.concurrency),
                                    scheduler=scheduler, num_samples=state.trials, reuse_actors=True,
                                    trial_dirname_creator=trial_dirname),
        run_config=run_config(state, reporter))


def run_config(state: sweep_state.SweepState, reporter: tune.ProgressReporter,
               callbacks: tuple[tune.Callback, ...] = ()) -> tune.RunConfig:
    """Storage, checkpoints, retries and the run-closing callback: the same for sweeps and ablations.

    Tune's CSV and JSON loggers are named here (ExperimentAnalysis and `export` read their files), its
    automatic set is off (`fit`): that set adds a TensorBoard logger, whose tensorboardX import loads
    torch into the driver (1.6 s before the first trial). MLflow is the sweep's record."""
    return tune.RunConfig(
        name=state.name, storage_path=state.storage,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
        failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
        callbacks=[CSVLoggerCallback(), JsonLoggerCallback(),
                   CloseChildRuns(tracking_uri=state.tracking_uri, experiment_id=state.experiment_id,
                                  parent_run_id=state.parent_run_id), *callbacks],
        progress_reporter=reporter, verbose=1)


def trial_dirname(trial) -> str:
    """<trainable>_<trial id>: Tune's default spells out every config field, ~50 here, in the folder name."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def trainable_for(state: sweep_state.SweepState, settings: TrialSettings | None = None):
    """The trial function with the sweep's settings and resources: built the same way by run and resume
    (Tuner.restore checks that the trainable is the one the sweep started with)."""
    settings = settings or trial_settings(state)
    return tune.with_resources(tune.with_parameters(unlearn_trial, settings=settings),
                               {"cpu": state.cpus_per_trial, "gpu": state.gpus_per_trial})


def trial_settings(state: sweep_state.SweepState) -> TrialSettings:
    return TrialSettings(
        tracking_uri=state.tracking_uri, experiment_id=state.experiment_id, parent_run_id=state.parent_run_id,
        checkpoint_every=state.checkpoint_every, cpus=state.cpus_per_trial, gpus=state.gpus_per_trial,
        cache_dir=state.cache_dir, references=state.references,
        attack_epochs=tuple(state.attack_epochs) if state.attack_epochs is not None else None,
        curve_budget=state.curve_budget, dataset_run_ids=(state.nested_under,) if state.nested_under else ())


def tune_environment() -> None:
    """The environment Tune reads as fit() starts (sweeps, ablations, resumes, a benchmark's seed runs)."""
    # The legacy console reporter: the new one ignores progress_reporter and prints every config field.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    # With CheckpointConfig(num_to_keep), Tune snapshots the experiment whenever a trial has checkpointed
    # num_to_keep times since the last snapshot, so that the snapshot never names a checkpoint already
    # deleted: with epochs of a few seconds that is every few seconds, and Tune then warns (six lines)
    # that snapshotting "may become a bottleneck". Here it cannot: the snapshot is a few KB written
    # beside the results, and the forced snapshots are what keeps `mixsweep resume` consistent, so
    # neither remedy Tune suggests (keep every checkpoint, checkpoint less often) is wanted. Tune's own
    # setting turns that one warning off (0 = never); a slow snapshot still warns (its own threshold).
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"   # run_config names the loggers it keeps


def fit(tuner: tune.Tuner, state: sweep_state.SweepState, *, next_step: str = "mixsweep export") -> bool:
    """Run (or continue) the trials, then leave no MLflow run open. Returns True when the sweep completed;
    after an interruption the open runs are closed KILLED (tagged interrupted) for `resume` to reopen."""
    tune_environment()
    interrupted = False
    try:
        tuner.fit()
    except KeyboardInterrupt:   # a second Ctrl-C; the first one makes Tune save its state and return
        interrupted = True
    trials = tune.ExperimentAnalysis(state.experiment_path).trials
    complete = close_leftovers(trials, tracking_uri=state.tracking_uri, experiment_id=state.experiment_id,
                               parent_run_id=state.parent_run_id) and not interrupted
    client = records.client(state.tracking_uri)
    if complete:
        ended = [t for t in trials if t.status == "TERMINATED"]
        records.close_run(client, state.parent_run_id, "FINISHED" if ended else "FAILED")
        print(f"sweep {state.name} done: {len(ended)} of {len(trials)} trials ended normally; next: "
              f"`{next_step} {state.name}`", flush=True)
    else:
        client.set_tag(state.parent_run_id, records.INTERRUPTED_TAG, "true")
        records.close_run(client, state.parent_run_id, "KILLED")
        print(f"sweep {state.name} interrupted; continue it with `mixsweep resume {state.name}`", flush=True)
    return complete
