"""MLflow records of one run: open (or reopen) it, log each epoch, log the results, close it.

Shared by the trials (a child run per trial), by the driver's callback (which closes the children of
trials that ASHA stopped, logging their last checkpoint's model) and by `mixsweep train` (a top-level
run). Everything goes through an explicit `MlflowClient(tracking_uri)`; only `mlflow.pytorch.log_model`
needs the process-wide tracking URI, which `log_results` sets.

Through a busy or restarting tracking server (trainables/delivery.py does the waiting):
- every call here is retried with backoff for a bounded time (MIXSWEEP_TRACKING_RETRY_S, on top of
  MLflow's own HTTP retries); past it the call raises, except `log_metrics`:
- `log_metrics` keeps the points it could not send and the trial keeps training; later calls send them
  (in order, with their original timestamps, so a re-send never duplicates a point) once the server
  answers /health again, and `close_run` sends whatever is left first. If it cannot, it raises, naming
  how many points of which epochs are missing, and leaves the run unclosed: a run is never FINISHED
  with points silently missing.
- opening a run is idempotent: a retried create whose first attempt reached the server finds that run
  by its tag (the trial id; a one-off id for a top-level run), and a duplicate the HTTP layer's own
  retry made is deleted, the oldest run kept.

A run's artifacts at the end:
    unlearned_model.pt   the unlearned model's state_dict (torch.load(..., weights_only=True))
    <name>.pt            a method's other networks (MixUnlearn: generator.pt; absent for an ablation without one)
    config.yaml          the flat config: `mixsweep train config.yaml` re-runs it
    metrics_table.txt    rows f_D / Retrain / method (mixunlearn.table.format_table), and metrics.csv
    + an MLflow PyTorch model named "model" with an input example (mlflow.pytorch.load_model loads it)
"""
from __future__ import annotations

import copy
import csv
import math
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from mlflow.entities import Metric, Param, RunStatus, ViewType
from mlflow.tracking import MlflowClient

from mixunlearn.table import COLUMNS, format_table

from . import delivery

if TYPE_CHECKING:   # torch loads only where a model is written: the sweep's driver opens and closes runs
    import torch    # with this module and never needs it (2 s of its start-up)
    from torch import nn

PARENT_TAG = "mlflow.parentRunId"      # MLflow's own nesting tag: the UI shows the child under its sweep
TRIAL_TAG = "mixsweep.trial_id"        # Tune's trial id: a resumed or retried trial finds its run again
KIND_TAG = "mixsweep.kind"             # "sweep", "trial" or "train"
MODEL_EPOCH_TAG = "mixsweep.model_epoch"   # the epoch whose weights the model artifacts hold
STOPPED_TAG = "mixsweep.stopped_early"     # "true" on a trial ASHA stopped before its last epoch (run FINISHED)
STOPPED_AT_TAG = "mixsweep.stopped_at_epoch"   # the epoch ASHA stopped it at: the fidelity of its metrics
INTERRUPTED_TAG = "mixsweep.interrupted"   # "true" while a sweep interrupted mid-trial waits for `resume`
LOST_TAG = "mixsweep.lost"             # "true" on the run of a trial whose driver was killed mid-trial (KILLED)
NODE_ID_TAG = "mixsweep.node_id"       # the Ray node the trial (last) ran on: which machine, on a cluster
NODE_IP_TAG = "mixsweep.node_ip"       # that node's IP address
OPEN_ID_TAG = "mixsweep.open_id"       # a top-level run's one-off id: a retried create finds its run
DIVERGED_TAG = "mixsweep.diverged"               # "true" on a run whose loss went NaN or Inf
DIVERGED_EPOCH_TAG = "mixsweep.diverged_epoch"   # the epoch it did so in
DIVERGED_LOSS_TAG = "mixsweep.diverged_loss"     # that epoch's mean loss (nan, inf or -inf)
MLFLOW_BATCH = 100                     # MLflow's limit of params per log_batch call


def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri)


# ---- opening and closing ------------------------------------------------------------------------------

def trial_runs_of(parent_run_id: str) -> str:
    """The filter for the trial runs under a sweep's parent: not every child is a trial (an audit of the sweep
    nests its own run there too), so a search for trials names the kind as well as the parent."""
    return f"tags.`{PARENT_TAG}` = '{parent_run_id}' AND tags.`{KIND_TAG}` = 'trial'"


def find_child_run(mlflow_client: MlflowClient, *, experiment_id: str, parent_run_id: str, trial_id: str):
    """The child run of `trial_id` under the sweep's parent run (the oldest, should there be two), or None."""
    runs = _runs_tagged(mlflow_client, experiment_id,
                        f"tags.`{PARENT_TAG}` = '{parent_run_id}' AND tags.`{TRIAL_TAG}` = '{trial_id}'")
    return runs[0] if runs else None


def open_child_run(mlflow_client: MlflowClient, *, experiment_id: str, parent_run_id: str, trial_id: str,
                   run_name: str, params: dict[str, Any]) -> str:
    """Get or create the trial's child run; a resumed trial gets its own run back, status RUNNING again."""
    existing = find_child_run(mlflow_client, experiment_id=experiment_id, parent_run_id=parent_run_id,
                              trial_id=trial_id)
    if existing is not None:
        if existing.info.status != "RUNNING":
            delivery.patiently(lambda: mlflow_client.update_run(existing.info.run_id, status="RUNNING"),
                               "reopen a run")
        if INTERRUPTED_TAG in existing.data.tags:
            delivery.patiently(lambda: _delete_tag(mlflow_client, existing.info.run_id, INTERRUPTED_TAG),
                               "delete a tag")
        return existing.info.run_id
    run_id = _create_once(mlflow_client, experiment_id, run_name=run_name,
                          tags={PARENT_TAG: parent_run_id, TRIAL_TAG: trial_id, KIND_TAG: "trial"},
                          identity=f"tags.`{PARENT_TAG}` = '{parent_run_id}' AND tags.`{TRIAL_TAG}` = '{trial_id}'")
    log_params(mlflow_client, run_id, params)
    return run_id


def open_run(mlflow_client: MlflowClient, *, experiment_id: str, run_name: str, kind: str,
             params: dict[str, Any], tags: dict[str, str] | None = None) -> str:
    """A new top-level run (a sweep's parent, or a `mixsweep train` run) with its params logged."""
    open_id = uuid.uuid4().hex
    run_id = _create_once(mlflow_client, experiment_id, run_name=run_name,
                          tags={KIND_TAG: kind, OPEN_ID_TAG: open_id, **(tags or {})},
                          identity=f"tags.`{OPEN_ID_TAG}` = '{open_id}'")
    log_params(mlflow_client, run_id, params)
    return run_id


def _create_once(mlflow_client: MlflowClient, experiment_id: str, *, run_name: str, tags: dict[str, str],
                 identity: str) -> str:
    """create_run, retried, leaving exactly one run that matches `identity` (a filter on its tags)."""
    def attempt() -> str:
        # A failed attempt may have created the run all the same (the answer was lost): look first.
        runs = _search_tagged(mlflow_client, experiment_id, identity)
        if not runs:
            mlflow_client.create_run(experiment_id, run_name=run_name, tags=tags)
            runs = _search_tagged(mlflow_client, experiment_id, identity)
        # MLflow's HTTP layer resends a POST whose answer timed out: that can make two; keep the oldest.
        for duplicate in runs[1:]:
            mlflow_client.delete_run(duplicate.info.run_id)
        return runs[0].info.run_id
    return delivery.patiently(attempt, "create a run")


def _runs_tagged(mlflow_client: MlflowClient, experiment_id: str, filter_string: str) -> list:
    return delivery.patiently(lambda: _search_tagged(mlflow_client, experiment_id, filter_string), "find a run")


def _search_tagged(mlflow_client: MlflowClient, experiment_id: str, filter_string: str) -> list:
    """Runs (deleted ones left out) matching `filter_string`, oldest first."""
    return mlflow_client.search_runs([experiment_id], filter_string=filter_string,
                                     run_view_type=ViewType.ACTIVE_ONLY,
                                     order_by=["attributes.start_time ASC", "attributes.run_id ASC"], max_results=10)


def _delete_tag(mlflow_client: MlflowClient, run_id: str, key: str) -> None:
    if key in mlflow_client.get_run(run_id).data.tags:   # a retried delete finds it gone: done
        mlflow_client.delete_tag(run_id, key)


def close_run(mlflow_client: MlflowClient, run_id: str, status: str) -> None:
    """End the run with its true status: FINISHED, FAILED or KILLED, once every metric point it was
    given has reached the server; if some cannot, raise delivery.UnsentMetrics and leave it open."""
    assert status in ("FINISHED", "FAILED", "KILLED"), status
    delivery.send_unsent(mlflow_client, run_id)
    delivery.patiently(lambda: mlflow_client.set_terminated(run_id, status=status), "close a run")


def run_status(mlflow_client: MlflowClient, run_id: str) -> str:
    return delivery.patiently(lambda: mlflow_client.get_run(run_id), "read a run").info.status


def ended(run) -> bool:
    """Whether the run records a trial's result, which a restarted trial reports instead of training again:
    FINISHED (all its epochs, or stopped early by ASHA), FAILED by divergence, or KILLED by early stopping
    (how runs recorded before issue 20 ended it). A KILLED run tagged interrupted still has epochs to run;
    one tagged lost was closed for good; a FAILED run without the divergence tag is an error Tune retries."""
    status, tags = run.info.status, run.data.tags
    return (status == "FINISHED" or (status == "FAILED" and tags.get(DIVERGED_TAG) == "true")
            or (status == "KILLED" and INTERRUPTED_TAG not in tags and LOST_TAG not in tags))


def recorded_result(mlflow_client: MlflowClient, run) -> dict[str, Any]:
    """What an ended run recorded, at the epoch it was ranked by: the last metrics of a finished run, those
    of a stopped run's stop epoch (a deferred evaluation may have logged the next epoch's accuracies
    before ASHA's stop), with its run id: the result a restarted trial hands Tune again."""
    stopped_at = run.data.tags.get(STOPPED_AT_TAG)
    if stopped_at is not None and int(run.data.metrics.get("epoch", -1)) != int(stopped_at):
        return metrics_at(mlflow_client, run, int(stopped_at))
    return {**run.data.metrics, "mlflow_run_id": run.info.run_id}


def metrics_at(mlflow_client: MlflowClient, run, epoch: int) -> dict[str, Any]:
    """The run's metrics logged at `epoch` (step = epoch), with its run id."""
    metrics = {}
    for key in run.data.metrics:
        history = delivery.patiently(lambda: mlflow_client.get_metric_history(run.info.run_id, key), "read metrics")
        at_epoch = [m.value for m in history if m.step == epoch]
        if at_epoch:
            metrics[key] = at_epoch[-1]
    return {**metrics, "mlflow_run_id": run.info.run_id}


def is_running(status: str) -> bool:
    return status in (RunStatus.to_string(RunStatus.RUNNING), RunStatus.to_string(RunStatus.SCHEDULED))


# ---- params and metrics ---------------------------------------------------------------------------------

def log_params(mlflow_client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    items = [Param(k, _param_text(v)) for k, v in params.items()]
    for start in range(0, len(items), MLFLOW_BATCH):
        chunk = items[start:start + MLFLOW_BATCH]
        # Logging a param again with the same value is allowed: a retry is harmless.
        delivery.patiently(lambda: mlflow_client.log_batch(run_id, params=chunk), "log params")


def log_metrics(mlflow_client: MlflowClient, run_id: str, metrics: dict[str, Any], *, step: int) -> None:
    """Every numeric metric at `step` (the epoch), in one call; kept and sent later while the server is
    unreachable (see the module docstring). The timestamp is fixed here, so a re-send is a no-op."""
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    delivery.send_metrics(mlflow_client, run_id, items)


def last_logged_epoch(mlflow_client: MlflowClient, run_id: str) -> int:
    """The highest epoch already in the run's history (0 for a new run): a resumed trial replays the
    epochs after its checkpoint and must not log the ones before the interruption twice."""
    history = delivery.patiently(lambda: mlflow_client.get_metric_history(run_id, "epoch"), "read metrics")
    return max((int(m.step) for m in history), default=0)


def _param_text(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


# ---- results --------------------------------------------------------------------------------------------

def log_results(tracking_uri: str, run_id: str, *, model: nn.Module, extra_states: dict[str, dict[str, torch.Tensor]],
                example: torch.Tensor, config: dict[str, Any], rows: dict[str, dict[str, float]], epoch: int,
                title: str = "") -> None:
    """Log the run's artifacts (see the module docstring); `rows` maps f_D / Retrain / method to metrics."""
    import torch

    from . import checkpoint

    mlflow_client = client(tracking_uri)
    model = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).eval()
    with tempfile.TemporaryDirectory(prefix="mixsweep-artifacts-") as tmp:
        folder = Path(tmp)
        torch.save(model.state_dict(), folder / "unlearned_model.pt")
        for name, state in extra_states.items():   # a method's other networks (MixUnlearn: generator.pt)
            torch.save(checkpoint.to_cpu(state), folder / f"{name}.pt")
        (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (folder / "metrics_table.txt").write_text(format_table(rows, title=title) + "\n")
        write_metrics_csv(folder / "metrics.csv", rows)
        log_files(mlflow_client, run_id, folder)
    log_pytorch_model(tracking_uri, run_id, model, example)
    set_tag(mlflow_client, run_id, MODEL_EPOCH_TAG, str(epoch))


def log_files(mlflow_client: MlflowClient, run_id: str, folder: str | Path, artifact_path: str | None = None) -> None:
    """The files of `folder` as the run's artifacts; an upload retried writes the same paths again."""
    delivery.patiently(lambda: mlflow_client.log_artifacts(run_id, str(folder), artifact_path=artifact_path),
                       "upload artifacts")


def set_tag(mlflow_client: MlflowClient, run_id: str, key: str, value: str) -> None:
    delivery.patiently(lambda: mlflow_client.set_tag(run_id, key, value), "set a tag")


def log_pytorch_model(tracking_uri: str, run_id: str, model: nn.Module, example: torch.Tensor) -> None:
    """The model as an MLflow PyTorch model ("pt2": torch.export, loads without unpickling our classes).

    The example holds two images: with one, torch.export would fix the batch size at 1. The pip
    requirement is given, because inferring it loads the model again in a subprocess (seconds per trial).
    A model torch.export cannot trace falls back to the pickle format, recorded in a tag."""
    import mlflow.pytorch
    import torch

    mlflow.set_tracking_uri(tracking_uri)
    # MLflow 3 files a logged model under the *active* experiment (Default, whose artifacts go to ./mlruns
    # of whatever directory the process runs in) before it looks at the run's; point it at the run's.
    mlflow.set_experiment(experiment_id=client(tracking_uri).get_run(run_id).info.experiment_id)
    requirements = [f"torch=={torch.__version__.split('+')[0]}"]
    example_array = example.detach().cpu().numpy()
    try:
        mlflow.pytorch.log_model(model, name="model", input_example=example_array, run_id=run_id,
                                 pip_requirements=requirements, serialization_format="pt2")
        serialization = "pt2"
    except Exception:   # noqa: BLE001 - any export failure: the pickle format always works for our models
        mlflow.pytorch.log_model(model, name="model", input_example=example_array, run_id=run_id,
                                 pip_requirements=requirements, serialization_format="pickle")
        serialization = "pickle"
    set_tag(client(tracking_uri), run_id, "mixsweep.model_format", serialization)


def log_checkpoint_results(tracking_uri: str, run_id: str, checkpoint_dir: str | Path, *, config: dict[str, Any],
                           title: str = "") -> int:
    """Log the results of the trial's checkpoint at `checkpoint_dir`; returns the epoch it holds."""
    from . import checkpoint

    saved = checkpoint.read(checkpoint_dir)
    log_results(tracking_uri, run_id, model=saved.unlearner(), extra_states=saved.artifact_states(),
                example=saved.example, config=config, rows=saved.rows, epoch=saved.epoch, title=title)
    return saved.epoch


def write_metrics_csv(path: Path, rows: dict[str, dict[str, float]]) -> None:
    columns = [c for c in (*COLUMNS, "unlearn_seconds") if any(c in r for r in rows.values())]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", *columns])
        for name, metrics in rows.items():
            writer.writerow([name, *(_csv_cell(metrics.get(c)) for c in columns)])


def _csv_cell(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(float(value))
