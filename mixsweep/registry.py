"""The MLflow Model Registry: a sweep's best model, or each ablation row's, as a version with an alias.

    mixsweep export quick --register mixunlearn-fmnist                 # a new version of it, alias @best
    mixsweep export quick --register mixunlearn-fmnist --alias tuned
    mixsweep export mixunlearn_components --register mixunlearn-components   # one version per variant
    mlflow.pytorch.load_model("models:/mixunlearn-fmnist@best")

A version's source is the trial run's logged MLflow PyTorch model (trainables/records.py logs it as
"model"; MLflow 3 keeps it as a LoggedModel), so the registry, the run and the weights are one record.
It is named by the LoggedModel's artifact location and model id, not by `models:/<model_id>`: MLflow
3.17's SQLAlchemy registry store resolves a models:/ source with a fresh `MlflowClient()`, i.e. against
the process-wide tracking URI (store/model_registry/sqlalchemy_store.py, create_model_version), so any
store but ./mlflow.db (a SQLite file elsewhere, a server whose database is not its working directory's)
answered "Logged model ... not found". The location and id are what that lookup would have returned.
The version carries:
- the config: the flat config as YAML in its description and as JSON in the tag `mixsweep.config`
  (`mixsweep train` re-runs the YAML);
- the metrics: a tag `metric.<name>` per metric the trial reported last (the epoch of its model);
- the reference hashes: every `mixsweep.reference.*` tag of the run, copied (absent: none copied);
- where it came from: `mixsweep.sweep`, `mixsweep.trial_id`, `mixsweep.model_epoch`, its run, and its
  LoggedModel's id `mixsweep.model_id` (MLflow's SQL registry does not keep the model id it is given).
An ablation row's best model is its seed with the lowest avg_gap (the distance to Retrain, the
platform's default objective); its alias is the variant's name, with characters an alias may not hold
('.', for one) replaced by '_'.
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import yaml
from mlflow.entities import LoggedModelOutput, Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mixunlearn.config import UnlearnConfig
from trainables import records

from . import state as sweep_state
from .errors import UsageError

MODEL_NAME = "model"                  # the name trainables/records.py logs the MLflow PyTorch model under
MODEL_ID_TAG = "mixsweep.model_id"    # the version's LoggedModel (m-...), as logged on its run
REFERENCE_PREFIX = "mixsweep.reference."
ALIAS = re.compile(r"^[\w-]+$")       # MLflow's alias spelling; "latest" and v<digits> are reserved
RESERVED_ALIAS = re.compile(r"^(latest|[vV]\d+)$", re.IGNORECASE)
ROW_OBJECTIVE = ("avg_gap", "min")    # which seed of an ablation row is its best model


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    alias: str
    run_id: str
    tracking_uri: str = ""

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"

    def load_hint(self) -> str:
        """The two calls that load it anywhere: the store first, since models:/ resolves there."""
        return f"mlflow.set_tracking_uri({self.tracking_uri!r}); mlflow.pytorch.load_model({self.uri!r})"


def check_alias(alias: str, flag: str = "--alias") -> str:
    if not ALIAS.match(alias) or RESERVED_ALIAS.match(alias):
        raise UsageError(f"{flag} {alias!r}: an MLflow alias holds letters, digits, '_' and '-' only, and is not "
                         "'latest' or v<number>; pick another")
    return alias


def alias_of(row: str) -> str:
    """An ablation variant's name as an alias: alpha_0.1 -> alpha_0_1."""
    alias = re.sub(r"[^\w-]", "_", row)
    return f"row_{alias}" if RESERVED_ALIAS.match(alias) else alias


def register_run(client: MlflowClient, name: str, *, run_id: str, alias: str, config: dict[str, Any],
                 metrics: dict[str, float], sweep: str, description_head: str = "") -> Registered:
    """Register the logged model of `run_id` as a new version of `name` and point `alias` at it."""
    run = client.get_run(run_id)
    model = logged_model(client, run)
    if model is None:
        raise UsageError(f"--register {name}: run {run_id} has no logged model (its trial ended before its first "
                         "checkpoint?); resume the sweep or register another run")
    tags = {
        "mixsweep.sweep": sweep, "mixsweep.trial_id": run.data.tags.get(records.TRIAL_TAG, ""),
        MODEL_ID_TAG: model.model_id,   # the SQL registry keeps no model id of its own (MLflow 3.17)
        "mixsweep.model_epoch": run.data.tags.get(records.MODEL_EPOCH_TAG, ""),
        "mixsweep.config": json.dumps(config, sort_keys=False),
        **{f"metric.{m}": repr(float(v)) for m, v in metrics.items() if math.isfinite(v)},
        **{k: v for k, v in run.data.tags.items() if k.startswith(REFERENCE_PREFIX)},
    }
    description = (description_head + "\n" if description_head else "") + yaml.safe_dump(config, sort_keys=False)
    try:
        client.create_registered_model(name, description="MixUnlearn models registered by `mixsweep export`")
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise UsageError(refusal(error, name=name, client=client)) from None
    try:
        version = client.create_model_version(name, source=model.artifact_location, run_id=run_id, tags=tags,
                                              description=description, model_id=model.model_id)
        client.set_registered_model_alias(name, alias, version.version)
    except MlflowException as error:
        raise UsageError(refusal(error, name=name, client=client, run_id=run_id, model_id=model.model_id)) from None
    return Registered(name=name, version=str(version.version), alias=alias, run_id=run_id,
                      tracking_uri=client.tracking_uri)


def refusal(error: MlflowException, *, name: str, client: MlflowClient, run_id: str = "", model_id: str = "") -> str:
    """One sentence naming why the registry refused: the name, or what it could not do with the model."""
    cause = error.message.splitlines()[0] if error.message else type(error).__name__
    if not run_id:   # creating the registered model: the name is all it was given
        return f"--register {name}: the registry refused the name ({cause}); pick another name"
    return (f"--register {name}: the registry of {client.tracking_uri} could not add run {run_id}'s logged model "
            f"{model_id} as a version ({cause}); check that the run's artifacts are reachable from there")


def logged_model(client: MlflowClient, run: Any):
    """The run's MLflow PyTorch model (the latest, if a resumed trial logged it twice), or None."""
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}' AND name = '{MODEL_NAME}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}], max_results=1)
    return models[0] if models else None


def record_best_on_parent(state: sweep_state.SweepState, best: dict[str, Any]) -> None:
    """The export's winner on the sweep's parent run: its last metrics (step = its epoch) and its model
    as the parent's output, so the sweep's collapsed row in the UI shows its result and its model."""
    from .export import REPORTED_METRICS

    if not best.get("mlflow_run_id"):
        return
    client = records.client(state.tracking_uri)
    epoch = int(best["epoch"]) if math.isfinite(best.get("epoch", math.nan)) else 0
    client.log_batch(state.parent_run_id, metrics=[
        Metric(m, float(best[m]), int(time.time() * 1000), epoch) for m in REPORTED_METRICS
        if isinstance(best.get(m), float) and math.isfinite(best[m])])
    client.set_tag(state.parent_run_id, "mixsweep.best_run_id", best["mlflow_run_id"])
    model = logged_model(client, client.get_run(best["mlflow_run_id"]))
    outputs = client.get_run(state.parent_run_id).outputs
    linked = {m.model_id for m in outputs.model_outputs} if outputs else set()
    if model is not None and model.model_id not in linked:   # MLflow refuses the same output twice
        client.log_outputs(state.parent_run_id, [LoggedModelOutput(model.model_id, epoch)])


def register_best(state: sweep_state.SweepState, best: dict[str, Any], config: dict[str, Any], *, name: str,
                  alias: str, header: str = "") -> Registered:
    """The sweep's best trial: its export row (last reported metrics) and its exported config (whose
    epochs are those of its model when ASHA stopped it early)."""
    from .export import REPORTED_METRICS

    if not best.get("mlflow_run_id"):
        raise UsageError(f"--register {name}: trial {best['trial_id']} has no MLflow run; nothing to register")
    metrics = {m: best[m] for m in REPORTED_METRICS if isinstance(best.get(m), float)}
    return register_run(records.client(state.tracking_uri), name, run_id=best["mlflow_run_id"],
                        alias=check_alias(alias), config=config, metrics=metrics, sweep=state.name,
                        description_head=header)


def register_rows(state: sweep_state.SweepState, rows: dict[str, list[Any]], *, name: str) -> list[Registered]:
    """Each row's best run (lowest avg_gap among its finished MLflow runs) under `name`, aliased by the row:
    the ablation's variants, or a benchmark's rows."""
    client = records.client(state.tracking_uri)
    metric, mode = ROW_OBJECTIVE
    registered = []
    for row, runs in rows.items():
        scored = [r for r in runs if math.isfinite(r.data.metrics.get(metric, math.nan))]
        if not scored:
            continue
        best = (min if mode == "min" else max)(scored, key=lambda r: r.data.metrics[metric])
        config = UnlearnConfig.from_params(best.data.params, source=f"run {best.info.run_id}").to_dict()
        registered.append(register_run(
            client, name, run_id=best.info.run_id, alias=alias_of(row), config=config, metrics=best.data.metrics,
            sweep=state.name, description_head=f"# Row {row} of {state.name}: run {best.info.run_id}, "
                                               f"{metric} = {best.data.metrics[metric]:.4g}"))
    return registered


def register_ablation(state: sweep_state.SweepState, *, name: str) -> list[Registered]:
    """Every variant's best seed of an ablation, alias = the variant."""
    from .ablate import finished_runs, load_info

    info = load_info(state)
    rows: dict[str, list[Any]] = {variant: [] for variant in info.variants}
    for (variant, _), run in finished_runs(state, info).items():   # the table's runs, reused ones included
        rows[variant].append(run)
    return register_rows(state, rows, name=name)


def register_export(sweep: str, exported: Any, *, storage: str | None, name: str, alias: str) -> list[Registered]:
    """`mixsweep export SWEEP --register NAME`: the best trial of a sweep (the first of a Pareto front),
    or every row of an ablation."""
    from .ablate import is_ablation

    state = sweep_state.load(sweep, storage)
    if is_ablation(state):
        return register_ablation(state, name=name)
    text = exported.configs[0].read_text()
    header = next((line for line in text.splitlines() if line.startswith("# ")), "")
    return [register_best(state, exported.best[0], yaml.safe_load(text), name=name, alias=alias, header=header)]
