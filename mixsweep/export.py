"""`mixsweep export SWEEP`: the best config(s) as files `mixsweep train` re-runs, every trial as Parquet.

    mixsweep export quick            # -> sweeps/quick/export/best.yaml, trials.parquet
    mixsweep train sweeps/quick/export/best.yaml

Writes into <sweep>/export/ and logs the same files on the sweep's parent run (artifact folder "export"):
- best.yaml: the winning trial's full flat config (one objective), or pareto/<trial_id>.yaml for each
  trial on the Pareto front (several objectives). A header comment names the trial, its MLflow run and
  its objective values, and a `# mixsweep-threads: N` line records the torch threads the trial ran
  with (its CPUs): `mixsweep train` uses it, because CPU results are exact only at the same thread count.
  The winner is ranked among every trial at the epoch of its last result, ASHA's stops included (the
  report's figures, which compare one fidelity, do not), so a trial ASHA stopped after epoch e can win:
  it is exported with `epochs: e`: those are the weights and metrics it was ranked by, and the loop
  draws each epoch's randomness per epoch, so e epochs replay exactly.
- trials.parquet: one row per trial. Columns, in order: trial_id, status (the MLflow run's: FINISHED,
  also for a trial ASHA stopped; FAILED; KILLED for one lost with its driver), tune_status, mlflow_run_id,
  duration_s, then every config field of the method(s) its trials ran (typed as in the
  config; lists as list<int64>), then the last reported metrics (REPORTED_METRICS; NaN where a metric was
  never reported, e.g. test_r on a data-level task).
A sweep whose trials recorded different f_D or Retrain hashes (mixsweep/provenance.py) is refused:
its trials were measured against different models and cannot be ranked together.
"""
from __future__ import annotations

import math
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from ray import tune

from mixunlearn.config import DEFAULT_METHOD, UnlearnConfig
from mixunlearn.metrics import DU_METRICS
from mixunlearn.table import COLUMNS
from trainables import records

from . import provenance, state as sweep_state
from .errors import UsageError

REPORTED_METRICS = (*COLUMNS, *DU_METRICS, "epoch", "epoch_seconds", "unlearn_seconds", "gpu_seconds")
PROGRESS_EVERY_S = 5.0   # a line of progress while reading many trials' runs (one MLflow query each)
LEADING_COLUMNS = ("trial_id", "status", "tune_status", "mlflow_run_id", "duration_s")
THREADS_LINE = "# mixsweep-threads: "
REFERENCES_LINE = "# mixsweep-references: "   # the sweep's reference store: a re-run uses the trial's f_D and Retrain


@dataclass
class Export:
    folder: Path
    parquet: Path
    configs: list[Path]     # best.yaml, or the Pareto set
    best: list[dict[str, Any]]   # the rows of those trials


def export_sweep(sweep: str, *, storage: str | None = None) -> Export:
    state = sweep_state.load(sweep, storage)
    trials = tune.ExperimentAnalysis(state.experiment_path).trials
    if not trials:
        raise UsageError(f"sweep {sweep!r}: it has no trials yet; run or resume it first")
    rows = trial_rows(trials, state)
    provenance.refuse_mixed_references(provenance.children_tags(
        records.client(state.tracking_uri), experiment_id=state.experiment_id, parent_run_id=state.parent_run_id),
        command=f"export {state.name}")
    folder = state.export_dir
    folder.mkdir(parents=True, exist_ok=True)
    parquet = write_parquet(rows, folder / "trials.parquet", state)
    winners = pareto_front(rows, state.objectives)
    if not winners:
        raise UsageError(f"sweep {sweep!r}: no trial reported {', '.join(m for m, _ in state.objectives)}; "
                         "check its trials' errors in MLflow or Tune's results")
    if len(state.objectives) == 1:
        configs = [write_config(winners[0], folder / "best.yaml", state, title="Best trial")]
    else:
        (folder / "pareto").mkdir(exist_ok=True)
        configs = [write_config(row, folder / "pareto" / f"{row['trial_id']}.yaml", state, title="Pareto trial")
                   for row in winners]
    records.client(state.tracking_uri).log_artifacts(state.parent_run_id, str(folder), artifact_path="export")
    if state.objectives:   # a sweep's (an ablation has no single winner)
        from .registry import record_best_on_parent
        record_best_on_parent(state, winners[0])
    return Export(folder=folder, parquet=parquet, configs=configs, best=winners)


# ---- the rows ------------------------------------------------------------------------------------------

def trial_rows(trials: list, state: sweep_state.SweepState) -> list[dict[str, Any]]:
    client = records.client(state.tracking_uri)
    rows = []
    shown = time.monotonic()
    for done, trial in enumerate(trials):
        if time.monotonic() - shown >= PROGRESS_EVERY_S:
            print(f"export {state.name}: {done}/{len(trials)} trials read from MLflow", flush=True)
            shown = time.monotonic()
        run = records.find_child_run(client, experiment_id=state.experiment_id,
                                     parent_run_id=state.parent_run_id, trial_id=trial.trial_id)
        result = trial.last_result or {}
        config = UnlearnConfig.from_dict(trial.config, source=f"trial {trial.trial_id}").to_dict()
        rows.append({
            "trial_id": trial.trial_id,
            "status": run.info.status if run else "NONE",
            "tune_status": trial.status,
            "mlflow_run_id": run.info.run_id if run else "",
            "duration_s": float(result.get("time_total_s", math.nan)),
            **config,
            **{m: _number(result.get(m)) for m in REPORTED_METRICS},
        })
    return rows


def write_parquet(rows: list[dict[str, Any]], path: Path, state: sweep_state.SweepState) -> Path:
    # A column per field of the methods the rows ran (a GA sweep's table holds lr, not MixUnlearn's alpha).
    types: dict[str, Any] = {}
    for method in dict.fromkeys(row.get("method", DEFAULT_METHOD) for row in rows) or [DEFAULT_METHOD]:
        types.update(UnlearnConfig.field_types(method))
    schema = pa.schema(
        [("trial_id", pa.string()), ("status", pa.string()), ("tune_status", pa.string()),
         ("mlflow_run_id", pa.string()), ("duration_s", pa.float64())]
        + [(name, _arrow_type(kind)) for name, kind in types.items()]
        + [(m, pa.float64()) for m in REPORTED_METRICS],
        metadata={"mixsweep.sweep": state.name, "mixsweep.parent_run_id": state.parent_run_id,
                  "mixsweep.objectives": ",".join(f"{m}:{d}" for m, d in state.objectives),
                  "mixsweep.threads": str(state.threads)})
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path)
    return path


def _arrow_type(kind: Any) -> pa.DataType:
    if typing.get_origin(kind) is list:
        return pa.list_(pa.int64())
    return {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}[kind]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


# ---- the winners ---------------------------------------------------------------------------------------

def pareto_front(rows: list[dict[str, Any]], objectives: list[list[str]]) -> list[dict[str, Any]]:
    """Trials no other trial beats on every objective, best first by the first objective. With one
    objective that is the single best trial (ties: the earliest)."""
    def score(row: dict[str, Any]) -> tuple[float, ...]:
        # Lower is better after the sign flip of "max" objectives.
        return tuple(row[m] if mode == "min" else -row[m] for m, mode in objectives)

    scored = [r for r in rows if all(math.isfinite(r[m]) for m, _ in objectives)]
    front = [r for r in scored
             if not any(all(a <= b for a, b in zip(score(o), score(r))) and score(o) != score(r) for o in scored)]
    front.sort(key=score)
    return front[:1] if len(objectives) == 1 else front


def write_config(row: dict[str, Any], path: Path, state: sweep_state.SweepState, *, title: str) -> Path:
    cfg = UnlearnConfig.from_params(row, source=f"trial {row['trial_id']}")
    config = cfg.to_dict()
    values = ", ".join(f"{m} = {row[m]:.4g}" for m, _ in state.objectives)
    lines = [f"# {title} of sweep {state.name}: trial {row['trial_id']}, MLflow run {row['mlflow_run_id']}, "
             f"{values} at epoch {int(row['epoch'])}."]
    if int(row["epoch"]) < cfg.unlearn_epochs:
        lines.append(f"# ASHA stopped it after epoch {int(row['epoch'])} of {cfg.unlearn_epochs}: it is cut to "
                     f"{int(row['epoch'])} epochs, the run it was ranked by.")
        config = cfg.truncated(int(row["epoch"])).to_dict()
    lines += [f"# Re-run: mixsweep train {path.name} -- exact on CPU with the trial's torch threads (next line).",
              f"{THREADS_LINE}{state.threads}"]
    if state.references:
        lines.append(f"{REFERENCES_LINE}{state.references}")
    path.write_text("\n".join(lines) + "\n" + yaml.safe_dump(config, sort_keys=False))
    return path


def references_of(text: str) -> str | None:
    """The reference store an exported config names, or None."""
    return next((line.removeprefix(REFERENCES_LINE).strip() for line in text.splitlines()
                 if line.startswith(REFERENCES_LINE)), None)


def threads_of(text: str) -> int | None:
    """The thread count an exported config records, or None."""
    for line in text.splitlines():
        if line.startswith(THREADS_LINE):
            return int(line.removeprefix(THREADS_LINE).strip())
    return None
