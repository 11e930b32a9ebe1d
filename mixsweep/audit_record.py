"""An audit's record: its MLflow run under the method's run, its folder of files, and what it prints.

    client, run_id = open_audit_run(target, models=16, metrics=("klom", "ulira"))   # reopens an unfinished one
    write_outputs(folder, target, scores, counts, seconds)    # figures.json, per_example.parquet, PNGs, summary.md
    record_run(client, run_id, folder, scores, counts, seconds)

The run holds the figures as metrics ("<row>/<figure>"), the number of models each kind trained and the
seconds of each part, and the folder's files as artifacts under audit/. It is tagged with the audit's key
(the config, N and the metrics), by which a resumed audit finds and reopens it.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mixunlearn.config import UnlearnConfig

if TYPE_CHECKING:
    from .audit import Target

AUDIT_TAG = "mixsweep.audit_key"   # sha256 of (config, N, metrics): a resumed audit finds its run by it
KIND = "audit"
# The rows scored like methods in every audit, named so that no method (mixunlearn.methods.METHODS: "retrain"
# among them) can take their place: doing nothing, and exact retraining (the held-out oracles).
ROWS = ("f_D", "exact_retraining")
ORIGINAL_ROW, RETRAIN_ROW = ROWS


# ---- the record ----------------------------------------------------------------------------------------

def audit_key(cfg: UnlearnConfig, models: int, metrics: tuple[str, ...]) -> str:
    return hashlib.sha256(json.dumps({"config": cfg.to_dict(), "models": models, "metrics": list(metrics)},
                                     sort_keys=True).encode()).hexdigest()


def open_audit_run(target: Target, *, models: int, metrics: tuple[str, ...], experiment_id: str | None = None):
    """The audit's MLflow run under the method's run: an unfinished one of the same audit is reopened."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    from . import tracking

    client = MlflowClient(target.tracking_uri)
    if target.parent_run_id is not None:
        experiment_id = client.get_run(target.parent_run_id).info.experiment_id
    experiment_id = experiment_id or tracking.ready_experiment(target.tracking_uri)
    key = audit_key(target.cfg, models, metrics)
    parent_filter = (f" AND tags.`mlflow.parentRunId` = '{target.parent_run_id}'" if target.parent_run_id else "")
    unfinished = [run for run in client.search_runs([experiment_id], f"tags.`{AUDIT_TAG}` = '{key}'{parent_filter}",
                                                    run_view_type=ViewType.ACTIVE_ONLY)
                  if run.info.status in ("RUNNING", "FAILED", "KILLED")]
    if unfinished:
        run_id = unfinished[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return client, run_id
    tags = {AUDIT_TAG: key, "mixsweep.kind": KIND, **tracking.git_commit()}
    if target.parent_run_id:
        tags["mlflow.parentRunId"] = target.parent_run_id
    run = client.create_run(experiment_id, run_name=f"audit-{target.label}-N{models}", tags=tags)
    params = {"models": models, "metrics": ",".join(metrics), "audited": target.label,
              **{k: v for k, v in target.cfg.to_dict().items()}}
    from trainables import records
    records.log_params(client, run.info.run_id, params)
    return client, run.info.run_id


def write_outputs(folder: Path, target: Target, scores, counts, seconds) -> None:
    import pyarrow.parquet as pq

    from . import evidence
    from .audit_figures import klom_png, roc_png

    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(scores.per_example(), folder / "per_example.parquet")
    figures = scores.figures()
    (folder / "figures.json").write_text(json.dumps({"figures": figures, "counts": counts, "seconds": seconds,
                                                     "bins": scores.bins, "models": scores.models,
                                                     "notes": scores.notes}, indent=2, sort_keys=True))
    footer = evidence.footer(sweep=f"audit {target.label}, N = {scores.models}", dataset=target.cfg.dataset,
                             task=target.cfg.task, hardware=evidence.cpu_model(),
                             found_versions=evidence.versions())
    if scores.ulira_by_row:
        roc_png(folder / "roc.png", scores, footer=footer)
    for group in ("forget", "retain", "test"):
        if any(group in per for per in scores.klom_by_row.values()):
            klom_png(folder / f"klom_{group}.png", scores, group=group, footer=footer)
    (folder / "summary.md").write_text(summary_markdown(target, scores, counts, seconds))


def record_run(client, run_id: str, folder: Path, scores, counts, seconds) -> None:
    from trainables import records

    metrics = {name: value for name, value in scores.figures().items() if math.isfinite(value)}
    metrics.update({f"models_{kind.replace(' ', '_').replace('-', '_')}_trained": c["trained"]
                    for kind, c in counts.items()})
    metrics.update({f"{name}_seconds": value for name, value in seconds.items()})
    records.log_metrics(client, run_id, metrics, step=0)
    records.log_files(client, run_id, folder, artifact_path="audit")


# ---- what it prints ------------------------------------------------------------------------------------

def summary_rows(target: Target, scores) -> list[tuple[str, dict[str, float]]]:
    from mixunlearn.judge.audit import NOISE

    labels = {target.label: f"{target.label} (method)", ORIGINAL_ROW: "f_D (doing nothing)",
              RETRAIN_ROW: "exact retraining", NOISE: "noise floor (oracle halves)"}
    return [(labels[row], scores.figures_by_row[row]) for row in (target.label, ORIGINAL_ROW, RETRAIN_ROW, NOISE)
            if row in scores.figures_by_row]


def interval_cell(figures: dict[str, float], name: str, digits: int = 3) -> str:
    value = figures.get(name, math.nan)
    if not math.isfinite(value):
        return "–"
    low, high = figures.get(f"{name}_low", math.nan), figures.get(f"{name}_high", math.nan)
    bounds = f" [{low:.{digits}f}, {high:.{digits}f}]" if math.isfinite(low) and math.isfinite(high) else ""
    return f"{value:.{digits}f}{bounds}"


def summary_markdown(target: Target, scores, counts, seconds) -> str:
    header = ("| row | KLOM forget (median) | KLOM retain | KLOM test | U-LiRA acc. | U-LiRA AUC | TPR @ 1% FPR "
              "| TPR @ 0.1% FPR | per-example AUC (median) |")
    lines = [f"# Audit of {target.label}: N = {scores.models}", "", header, "|---|" + "---:|" * 8]
    for label, f in summary_rows(target, scores):
        lines.append(f"| {label} | {interval_cell(f, 'klom_forget_median')} | {interval_cell(f, 'klom_retain_median')} "
                     f"| {interval_cell(f, 'klom_test_median')} | {interval_cell(f, 'ulira_accuracy')} "
                     f"| {interval_cell(f, 'ulira_auc')} | {interval_cell(f, 'ulira_tpr_at_1pct')} "
                     f"| {interval_cell(f, 'ulira_tpr_at_0.1pct')} | {interval_cell(f, 'ulira_example_auc_median')} |")
    lines += ["", f"KLOM = KL(oracles || unlearned) of the true-class margin per point, {scores.bins} bins (the "
              "noise floor's); median over the points, [95% interval from resampling the points]. U-LiRA: "
              "per forget example, Gaussians of the unlearned models' and the oracles' margins without the attacked "
              "pair (one global variance per group below N = 32); ideal accuracy = AUC = 0.5, [AUC's 95% interval "
              "from resampling the forget examples]. Exact retraining: N more Retrain seeds (N..2N-1)."]
    lines += [f"- {note}" for note in scores.notes]
    lines += ["", "| models | needed | cached before | trained now |", "|---|---:|---:|---:|"]
    lines += [f"| {kind} | {c['needed']} | {c['cached']} | {c['trained']} |" for kind, c in counts.items()]
    lines += ["", "Seconds: " + ", ".join(f"{name} {value:.1f}" for name, value in seconds.items())]
    return "\n".join(lines) + "\n"


def print_summary(target: Target, scores, counts, seconds, folder: Path) -> None:
    print(summary_markdown(target, scores, counts, seconds), flush=True)
    print(f"written: {folder}/ (figures.json, per_example.parquet, summary.md, PNGs)", file=sys.stdout, flush=True)


