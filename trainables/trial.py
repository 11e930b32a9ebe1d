"""The unlearning trial: one Ray Tune function trainable for every method, read top to bottom.

The driver hands Tune `trainables.entry.unlearn_trial`, which runs `run_trial` here in the trial's Ray
worker: this module (torch, the methods, MLflow's model flavour) loads there, never in the driver.

The Tune `config` IS the flat UnlearnConfig dict (mixunlearn/config.py), its `method` field included:
the trial builds that method's loop from mixunlearn.methods.METHODS and never names one. Everything
about the sweep rather than the run (where MLflow is, the parent run, how often to checkpoint) comes
in `settings` (entry.TrialSettings).

One trial:
  1. config -> UnlearnConfig.
  2. The MLflow child run (under the sweep's parent run), found again by trial id on a resume and tagged
     with the Ray node it runs on (mixsweep.node_id, mixsweep.node_ip); a trial whose run already
     ended (the driver died before Tune saved that) reports that result and returns.
  3. device = the GPU Ray assigned (CUDA_VISIBLE_DEVICES) or the CPU; torch threads = Ray's CPUs.
  4. prepare(): data on the device, the forget split, f_D and Retrain from the sweep's reference store
     (trained once per cluster, trainables/references.py) and their metrics (evaluated once per cluster
     and device type, stored beside them); the two models' sha256 tagged on the run. Cached in this
     process, so the next trial in a reused actor skips it. Then the method's loop, restored from
     `tune.get_checkpoint()` when Tune resumes or retries the trial.
  5. Every epoch: the metrics (with the loop's own diagnostics, e.g. MixUnlearn's masks and losses) to
     MLflow (step = epoch); at the first and the last epoch, PNG grids of the loop's mixes, if it makes
     any (trainables/mix_pictures.py), under mix_grids/.
     The CPU attackers (mia_efficacy, asr, avg_gap) run only at `attack_epochs` (ASHA's rungs) and the
     last epoch, on a GPU in a background thread while training goes on
     (mixunlearn.run.evaluated_epochs); such an epoch goes to MLflow and to `tune.report` when they are
     done. The epochs between get their accuracies within the sweep's `curve_budget`. Tune hears only
     epochs with every metric: ASHA reads no other, and Tune refuses a report without the objective.
     Each report also says how many epochs the trial plans (`planned_epochs`): the driver tells a trial
     ASHA stopped from one that finished by it, without loading the methods. A checkpoint goes with a
     report once `checkpoint_every` epochs have passed since the last one, and with the last report.
  6. Before the last report: the results to MLflow and the run closed FINISHED. (ASHA answers the report
     at max_t with STOP, and a stopped function never runs again: nothing may come after that report.)
A trial ASHA stops earlier is closed FINISHED, tagged mixsweep.stopped_early and .stopped_at_epoch, by the
driver's callback (mixsweep/callback.py), which logs the model from the trial's last checkpoint.

Divergence is a result, not a crash: when the loop raises Diverged (a NaN or Inf epoch loss), the run is
closed FAILED with the tags mixsweep.diverged, .diverged_epoch and .diverged_loss, and the trial reports
NaN for every metric and returns. Tune ends it TERMINATED (no retry: it raised nothing), the searcher
tells Optuna it FAILed (mixsweep/optuna_search.py), and the sweep goes on.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
from typing import Any

import ray
import torch
from mlflow.entities import RunTag
from ray import tune

from mixunlearn.config import UnlearnConfig
from mixunlearn.methods import METHODS, Diverged, build_method
from mixunlearn.metrics import ATTACK_METRICS
from mixunlearn.run import Prepared, evaluated_epochs, prepare
from mixunlearn.table import COLUMNS

from . import checkpoint, datasets, mix_pictures, records, references
from .entry import PLANNED_EPOCHS, TrialSettings

# Common fields only the loop reads. Every other common field (data, task, reference recipe, seeds,
# evaluation sizes) shapes what prepare() builds, so it keys the process-local cache below (a method's
# own fields never do); a field added to UnlearnConfig later lands in the key, which is the safe side.
LOOP_COMMON_FIELDS = frozenset({"method", "targets", "device"})



def run_trial(config: dict[str, Any], settings: TrialSettings) -> None:
    """One trial of the sweep `settings` describes, for the config Tune drew (see the module docstring)."""
    # Tune's storage logs every checkpoint at INFO, which buries the progress table on the console.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    cfg = UnlearnConfig.from_dict(config, source="trial config")
    context = tune.get_context()
    mlflow_client = records.client(settings.tracking_uri)
    earlier = records.find_child_run(mlflow_client, experiment_id=settings.experiment_id,
                                     parent_run_id=settings.parent_run_id, trial_id=context.get_trial_id())
    if earlier is not None and records.ended(earlier):
        # Tune's last snapshot predates this trial's end (the driver died in between), so a resume
        # restarted it: report the result MLflow recorded instead of training it again.
        if earlier.data.tags.get(records.DIVERGED_TAG) == "true":
            tune.report({**diverged_result(earlier.info.run_id, int(earlier.data.tags[records.DIVERGED_EPOCH_TAG])),
                         PLANNED_EPOCHS: cfg.unlearn_epochs})
        else:
            tune.report({**records.recorded_result(mlflow_client, earlier), PLANNED_EPOCHS: cfg.unlearn_epochs})
        return
    values = cfg.to_dict()
    run_id = records.open_child_run(
        mlflow_client, experiment_id=settings.experiment_id, parent_run_id=settings.parent_run_id,
        trial_id=context.get_trial_id(), params=values,
        run_name=settings.run_name.format(**values) if settings.run_name else context.get_trial_name())
    # The machine it runs on (a retried trial may move): on a cluster, the first question about a slow
    # or failed trial.
    mlflow_client.log_batch(run_id, tags=[RunTag(records.NODE_ID_TAG, ray.get_runtime_context().get_node_id()),
                                          RunTag(records.NODE_IP_TAG, ray.util.get_node_ip_address()),
                                          *(RunTag(key, text.format(**values)) for key, text in settings.run_tags)])

    device = trial_device()
    torch.set_num_threads(max(1, int(settings.cpus)))
    prepared = prepare_cached(cfg, device, settings.cache_dir, settings.references)
    mlflow_client.log_batch(run_id, tags=references.provenance_tags(prepared.references))
    # The UI's Dataset column: D and D_f, on the trial's run, its sweep's and a benchmark's above that.
    datasets.log_dataset_inputs(mlflow_client, run_id, prepared,
                                also_on=(settings.parent_run_id, *settings.dataset_run_ids))
    loop = build_method(cfg, prepared.data, prepared.split, original=prepared.references.original, device=device)
    resumed_from = tune.get_checkpoint()
    if resumed_from is not None:
        with resumed_from.as_directory() as directory:
            loop.load_state_dict(checkpoint.read(directory).state)
    already_logged = records.last_logged_epoch(mlflow_client, run_id)
    try:
        report_epochs(settings, cfg, run_id, loop, prepared, already_logged)
    except Diverged as diverged:
        close_diverged(mlflow_client, run_id, diverged)
        tune.report({**diverged_result(run_id, diverged.epoch), PLANNED_EPOCHS: loop.epochs})


def report_epochs(settings: TrialSettings, cfg: UnlearnConfig, run_id: str, loop, prepared: Prepared,
                  already_logged: int) -> None:
    """Train the loop's remaining epochs, each to MLflow and every one with all metrics to Tune."""
    mlflow_client = records.client(settings.tracking_uri)
    checkpointed = loop.epoch
    for evaluated in evaluated_epochs(prepared, loop, attack_epochs=settings.attack_epochs,
                                      curve_budget=settings.curve_budget):
        metrics = evaluated.metrics
        epoch = int(metrics["epoch"])
        last = epoch == loop.epochs
        if epoch > already_logged:
            records.log_metrics(mlflow_client, run_id, metrics, step=epoch)
            if epoch == 1 or last:   # the mixes before and after training G, at the loop's epoch (a
                # deferred epoch 1 arrives after epoch 2 trained)
                mix_pictures.log_mix_grids(mlflow_client, run_id, loop, prepared.data, epoch=loop.epoch)
        if any(name not in metrics for name in ATTACK_METRICS):
            continue   # the accuracies of an epoch between rungs: MLflow's history only
        rows = finish_rows(prepared, metrics)
        if last:
            finish(settings, run_id, loop, prepared, metrics)
        result = {**metrics, "mlflow_run_id": run_id, "gpu_seconds": metrics["unlearn_seconds"] * settings.gpus,
                  PLANNED_EPOCHS: loop.epochs}
        if last or epoch - checkpointed >= settings.checkpoint_every:
            checkpointed = epoch
            # A deferred epoch carries its own state: the loop has trained the next epoch since.
            state = evaluated.state if evaluated.state is not None else loop.state_dict()
            with tempfile.TemporaryDirectory(prefix="mixsweep-ckpt-") as directory:
                checkpoint.write(directory, state=state, epoch=epoch, model=model_spec(prepared, loop),
                                 rows=rows, example=input_example(prepared))
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(result)


def finish(settings: TrialSettings, run_id: str, loop, prepared: Prepared, metrics: dict[str, float]) -> None:
    """Log the results of the last epoch and close the run FINISHED."""
    rows = finish_rows(prepared, metrics)
    state = loop.state_dict()
    records.log_results(settings.tracking_uri, run_id, model=loop.model,
                        extra_states={key: state[key] for key in loop.artifact_keys if state.get(key)},
                        example=input_example(prepared), config=prepared.cfg.to_dict(), rows=rows,
                        epoch=loop.epoch, title=table_title(prepared.cfg))
    records.close_run(records.client(settings.tracking_uri), run_id, "FINISHED")


def diverged_result(run_id: str, epoch: int) -> dict[str, Any]:
    """A diverged trial's one report: NaN for every metric (so Optuna marks it failed, ASHA ignores it)."""
    return {**{name: math.nan for name in (*COLUMNS, *ATTACK_METRICS)}, "epoch": epoch, "diverged": 1,
            "mlflow_run_id": run_id}


def close_diverged(mlflow_client, run_id: str, diverged: Diverged) -> None:
    """Close a diverged run FAILED with its epoch and loss as tags: a result the UI can filter on."""
    mlflow_client.log_batch(run_id, tags=[RunTag(records.DIVERGED_TAG, "true"),
                                          RunTag(records.DIVERGED_EPOCH_TAG, str(diverged.epoch)),
                                          RunTag(records.DIVERGED_LOSS_TAG, str(diverged.loss))])
    records.close_run(mlflow_client, run_id, "FAILED")


# ---- device and the process-local cache -----------------------------------------------------------------

def trial_device() -> torch.device:
    """The GPU Ray assigned to this trial, else the CPU. Ray sets CUDA_VISIBLE_DEVICES to the assigned
    GPU (also for a fraction of one), so inside the trial it is always cuda:0."""
    if ray.get_gpu_ids() and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


_PREPARED: dict[tuple, Prepared] = {}


def prepare_cached(cfg: UnlearnConfig, device: torch.device, cache_dir: str | None,
                   shared_references: str | None = None) -> Prepared:
    """prepare(), kept for the next trial of this process (Tune reuses actors): only the last one is
    kept, since a sweep's trials share their data, split and reference models."""
    values = cfg.to_dict()
    key = (str(device), cache_dir, shared_references,
           tuple((k, repr(values[k])) for k in UnlearnConfig.common_fields() if k not in LOOP_COMMON_FIELDS))
    if key not in _PREPARED:
        _PREPARED.clear()
        _PREPARED[key] = prepare(cfg, device=device, cache_dir=cache_dir,
                                 store=references.trial_store(cache_dir, shared_references))
    # The loop's fields (epochs, above all) are read from prepared.cfg: give it this trial's config.
    return dataclasses.replace(_PREPARED[key], cfg=cfg)


# ---- what the records need ------------------------------------------------------------------------------

def model_spec(prepared: Prepared, loop) -> dict[str, Any]:
    """The build_model arguments that rebuild the unlearned model, and where in the loop's state_dict its
    weights (and the method's other networks) are."""
    data = prepared.data
    return {"name": prepared.cfg.model, "num_classes": data.num_classes, "in_channels": data.in_channels,
            "image_size": data.image_size, "state_key": loop.model_key, "artifact_keys": list(loop.artifact_keys)}


def input_example(prepared: Prepared) -> torch.Tensor:
    """Two retain images, normalised as the model sees them: the MLflow model's input example."""
    images = prepared.data.train_images[prepared.split.retain_idx[:2].to(prepared.device)]
    return prepared.data.normalize(images).cpu()


def table_title(cfg: UnlearnConfig) -> str:
    return f"{METHODS[cfg.method].title} on {cfg.dataset} / {cfg.task} / {cfg.model} / targets {cfg.targets}"


def method_row(cfg: UnlearnConfig) -> str:
    """The metrics table's row of the run's method (beside f_D and Retrain)."""
    return METHODS[cfg.method].title


def finish_rows(prepared: Prepared, metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """The metrics table: f_D, Retrain and the run's method."""
    return {"f_D": prepared.original_metrics, "Retrain": prepared.retrain_metrics, method_row(prepared.cfg): metrics}
