"""`mixsweep report SWEEP_OR_ABLATION`: a self-contained folder (report.md + PNG figures) that reads
without MLflow, Ray or Optuna.

    mixsweep report quick                     # -> sweeps/quick/report/report.md, history.png, ...
    mixsweep report mixunlearn_components --out /tmp/components-report

For a sweep (sources: Tune's results in the sweep folder and the Optuna study in its optuna.db), every
figure that compares trials compares them at one fidelity and says which (mixsweep/fidelity.py):
- history.png      each completed trial's objective value(s) by Optuna trial number and their best so
                   far; the trials ASHA stopped are drawn faded at their stop value, outside the best;
- pareto.png       the completed trials on the first two objectives and their Pareto front (several
                   objectives);
- importances.png  each searched parameter's importance per objective: Optuna's fANOVA over the
                   completed trials, or, with fewer than two, every trial at the deepest rung two
                   reached (indicative only with a few dozen trials);
- curves.png       the objective(s) after each epoch for the top trials (the Pareto front when several);
- best_config.yaml the best trial's full flat config (the first of the front when several), and the
                   front's searched values and objectives as a table.
For an ablation (`mixsweep ablate`; source: its MLflow records, as `ablate` reads them): the table
(table.md, table.csv) and bars.png, one panel per metric, a bar per variant with ± std error bars. The
table is also rewritten in <ablation>/ablation/ and logged on the parent run again, which is how an
ablation finished by `mixsweep resume` gets its table.

Both also show what MixUnlearn's generator did (from MLflow; left out, saying so, where it is not
reachable or the runs have no generator): masks.png, G's mean forget share and within-image std
against the epoch (sweep: the top trials; ablation: each variant's mean over its seeds), and the best
run's (ablation: the best seed of the best variant by mean avg_gap) PNG grids of (forget, retain, mask, mix), first and last epoch, copied into mix_grids/.

Every figure's footer names the sweep, dataset, task, hardware and package versions. The hardware of
a sweep is its Ray cluster as its MLflow parent run recorded it (cluster_* params) plus this
machine's CPU; an ablation records the full line when it runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import evidence, figures, state as sweep_state
from .endings import completed
from .errors import UsageError
from .fidelity import MIN_TRIALS, legacy, one_fidelity

TOP_TRIALS = 5        # curves: more lines than this are unreadable in one panel
MASK_METRICS = ("mask_forget_share", "mask_spatial_std")   # MixUnlearn.diagnostics(), plotted by epoch
REPORT_FOLDER = "report"


@dataclass
class Report:
    folder: Path
    markdown: Path
    figures: list[Path]


def write_report(target: str, *, storage: str | None = None, out: str | Path | None = None) -> Report:
    """Write the report of the sweep or ablation `target` (a name under storage, or its folder)."""
    from .ablate import is_ablation

    state = sweep_state.load(target, storage)
    folder = Path(out).expanduser().resolve() if out else state.local_dir / REPORT_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    if is_ablation(state):
        return ablation_report(state, folder)
    return sweep_report(state, folder)


# ---- ablations -------------------------------------------------------------------------------------------

def ablation_report(state: sweep_state.SweepState, folder: Path) -> Report:
    from .ablate import load_info, table_document, write_table

    info = load_info(state)
    # Recomputed from MLflow and logged again: after `mixsweep resume` this is where the table appears.
    table = write_table(state, info, echo=False).table
    footer = evidence.footer(sweep=state.name, dataset=info.dataset, task=info.task, hardware=info.hardware,
                             found_versions=info.versions)
    retrain = {m: s.mean for m, s in table.retrain_row().items()}
    bars = figures.ablation_bars(
        folder / "bars.png", variants=info.variants, metrics=info.metrics,
        means={v: {m: table.stats[v][m].mean for m in info.metrics} for v in info.variants},
        stds={v: {m: table.stats[v][m].std for m in info.metrics} for v in info.variants},
        retrain=retrain, title=f"Ablation {state.name}: mean ± std over seeds", footer=footer)
    (folder / "table.csv").write_text(table.csv_text())
    document = table_document(state, info, table)
    masks, mask_text = mask_section(folder, **ablation_masks(state, info), footer=footer,
                                    what=f"Ablation {state.name}")
    markdown = folder / "report.md"
    markdown.write_text(document + "\n## Per metric\n\n"
                        "Bars: mean over seeds, error bars ± sample std; dashed line: Retrain's mean.\n\n"
                        f"![mean ± std per variant and metric]({bars.name})\n\nThe same numbers: "
                        "[table.csv](table.csv).\n\n" + mask_text)
    return Report(folder=folder, markdown=markdown, figures=[bars, *masks])


def ablation_masks(state: sweep_state.SweepState, info) -> dict[str, Any]:
    """Each variant's mask diagnostics by epoch (mean over its finished seeds) and the best run (the best
    seed of the variant with the lowest mean final avg_gap), from the table's runs (ablate.finished_runs)."""
    from trainables import records

    from .ablate import finished_runs

    try:
        latest = finished_runs(state, info)   # the table's runs, reused ones (--reuse) included
        client = records.client(state.tracking_uri)
        series: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
        for variant in info.variants:
            runs = [run for (row, _), run in latest.items() if row == variant]
            by_metric = {}
            for metric in MASK_METRICS:
                by_epoch: dict[int, list[float]] = {}
                for run in runs:
                    for point in client.get_metric_history(run.info.run_id, metric):
                        by_epoch.setdefault(int(point.step), []).append(point.value)
                if by_epoch:
                    steps = sorted(by_epoch)
                    by_metric[metric] = (steps, [sum(by_epoch[e]) / len(by_epoch[e]) for e in steps])
            if by_metric:
                series[variant] = by_metric
        # The best variant (lowest mean final avg_gap over its seeds), shown by its best seed.
        scored = [(variant, run) for (variant, _), run in latest.items()
                  if math.isfinite(run.data.metrics.get("avg_gap", math.nan))]
        gaps: dict[str, list[float]] = {}
        for variant, run in scored:
            gaps.setdefault(variant, []).append(run.data.metrics["avg_gap"])
        best_variant = min(gaps, key=lambda v: sum(gaps[v]) / len(gaps[v]), default=None)
        best = min((run for variant, run in scored if variant == best_variant),
                   key=lambda r: r.data.metrics["avg_gap"], default=None)
    except Exception as error:   # noqa: BLE001 - the report must not need MLflow; say what is missing instead
        return {"series": {}, "best_run": None, "client": None, "why_not": f"MLflow unreachable ({error})"}
    label = best and (f"{best.info.run_name}, the best seed (avg_gap {best.data.metrics['avg_gap']:.2f}) of the "
                      f"variant with the lowest mean avg_gap")
    return {"series": series, "best_run": best and best.info.run_id, "client": client, "best_label": label}


# ---- sweeps ----------------------------------------------------------------------------------------------

def sweep_report(state: sweep_state.SweepState, folder: Path) -> Report:
    import optuna
    from ray import tune

    from .export import pareto_front

    trials = tune.ExperimentAnalysis(state.experiment_path)
    if not trials.trials:
        raise UsageError(f"sweep {state.name!r}: it has no trials yet; run or resume it first")
    study_file = state.local_dir / "optuna.db"
    if not study_file.is_file():
        raise UsageError(f"sweep {state.name!r}: no Optuna study at {study_file}; a report needs the folder "
                         "`mixsweep run` wrote, with its optuna.db")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=state.name, storage=state.optuna_url)
    objectives = state.objectives
    metrics = [m for m, _ in objectives]

    rows = [{"trial_id": t.trial_id, "status": t.status, **t.config,
             **{k: _number((t.last_result or {}).get(k)) for k in (*metrics, "epoch")},
             "completed": completed(t.last_result, t.config, metrics)}
            for t in trials.trials]
    front = pareto_front(rows, objectives)
    first = rows[0]
    footer = evidence.footer(sweep=state.name, dataset=str(first["dataset"]), task=str(first["task"]),
                             hardware=sweep_hardware(state), found_versions=evidence.versions())
    searched = searched_fields([t.config for t in trials.trials])
    made: list[Path] = []
    sections: list[str] = []

    # ---- optimisation history ----
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.values]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED and t.values]
    if legacy(study):
        sections.append("Note: this study was recorded before trials' endings were told apart (issue 20): "
                        "trials ASHA stopped are COMPLETE in it, so its figures mix fidelities.\n")
    if complete:
        made.append(figures.history(folder / "history.png", numbers=[t.number for t in complete],
                                    values=[list(t.values) for t in complete], objectives=objectives,
                                    stopped=[(t.number, list(t.values)) for t in pruned],
                                    title=f"Sweep {state.name}: optimisation history, best so far over the "
                                          f"{len(complete)} completed trials", footer=footer))
        sections.append(f"## Optimisation history\n\n{len(complete)} completed Optuna trials of "
                        f"{len(study.trials)} ({len(pruned)} stopped early by ASHA, drawn faded at the value "
                        "they were stopped on and left out of the best so far: an early epoch's value is not "
                        "a configuration's result).\n\n![optimisation history](history.png)\n")
    else:
        sections.append("## Optimisation history\n\nNo Optuna trial completed yet.\n")

    # ---- Pareto front ----
    if len(objectives) > 1:
        scored = [r for r in rows if r["completed"]]
        completed_front = pareto_front(scored, objectives)
        made.append(figures.pareto(folder / "pareto.png", points=[(r[metrics[0]], r[metrics[1]]) for r in scored],
                                   front=[(r[metrics[0]], r[metrics[1]]) for r in completed_front],
                                   axes_names=(f"{metrics[0]} ({objectives[0][1]})", f"{metrics[1]} ({objectives[1][1]})"),
                                   title=f"Sweep {state.name}: Pareto front of the {len(scored)} completed trials",
                                   footer=footer))
        extra = "" if len(objectives) == 2 else f" (the first two of {len(objectives)} objectives)"
        sections.append(f"## Pareto front\n\n{len(completed_front)} of the {len(scored)} completed trials on the "
                        f"front{extra}.\n\n![Pareto front](pareto.png)\n")

    # ---- parameter importances ----
    scores, compared, why_not = importances(study, metrics)
    if scores:
        made.append(figures.importances(folder / "importances.png", per_objective=scores,
                                        title=f"Sweep {state.name}: parameter importances (fANOVA) over {compared}",
                                        footer=footer))
        sections.append(f"## Parameter importances\n\nOptuna's fANOVA (seed 0) over {compared}: one fidelity, "
                        "never an early epoch's values beside final ones; a share of the objective's variance per "
                        "parameter, indicative only with few trials.\n\n![parameter importances](importances.png)\n")
    else:
        sections.append(f"## Parameter importances\n\nNot computed: {why_not}.\n")

    # ---- per-epoch curves of the top trials ----
    top = front if len(objectives) > 1 else sorted(
        [r for r in rows if math.isfinite(r[metrics[0]])],
        key=lambda r: r[metrics[0]] if objectives[0][1] == "min" else -r[metrics[0]])
    top = top[:TOP_TRIALS]
    series = {}
    for row in top:
        frame = trials.trial_dataframes.get(row["trial_id"])
        if frame is None or frame.empty or "epoch" not in frame:
            continue
        series[row["trial_id"]] = {m: (frame["epoch"].tolist(), frame[m].tolist()) for m in metrics if m in frame}
    if series:
        made.append(figures.curves(folder / "curves.png", series=series, objectives=metrics,
                                   title=f"Sweep {state.name}: per-epoch objective, top {len(series)} trials",
                                   footer=footer))
        sections.append(f"## Per-epoch curves\n\nThe top {len(series)} trials "
                        f"({'the Pareto front' if len(objectives) > 1 else 'best final ' + metrics[0]}).\n\n"
                        "![per-epoch curves](curves.png)\n")

    # ---- the generator's masks ----
    masks, mask_text = mask_section(folder, **sweep_masks(state, trials, top, front), footer=footer,
                                    what=f"Sweep {state.name}")
    made += masks
    sections.append(mask_text)

    # ---- the best config ----
    if front:
        best = front[0]
        config = {k: v for k, v in best.items() if k not in ("trial_id", "status", "completed", *metrics, "epoch")}
        (folder / "best_config.yaml").write_text(
            f"# Best trial of sweep {state.name}: {best['trial_id']}, "
            + ", ".join(f"{m} = {best[m]:.4g}" for m in metrics) + f" at epoch {int(best['epoch'])}.\n"
            + yaml.safe_dump(config, sort_keys=False))
        sections.insert(0, best_section(front, objectives, searched, multi=len(objectives) > 1))

    markdown = folder / "report.md"
    markdown.write_text("\n".join([
        f"# Sweep {state.name}", "",
        f"Space: `{state.space_file}`; {len(rows)} Tune trials; objectives: "
        + ", ".join(f"{m} ({d})" for m, d in objectives) + f"; scheduler {state.scheduler}.",
        f"Data: {first['dataset']} / {first['task']} / {first['model']}. Hardware: {sweep_hardware(state)}.",
        f"Versions: {evidence.versions_text(evidence.versions())}.", "",
        *sections, trials_section(rows, objectives, searched)]))
    return Report(folder=folder, markdown=markdown, figures=made)


def sweep_masks(state: sweep_state.SweepState, trials, top: list[dict[str, Any]],
                front: list[dict[str, Any]]) -> dict[str, Any]:
    """The top trials' mask diagnostics by epoch (Tune's results) and the best trial's MLflow run."""
    from trainables import records

    series = {}
    for row in top:
        frame = trials.trial_dataframes.get(row["trial_id"])
        if frame is not None and "epoch" in frame and all(m in frame for m in MASK_METRICS):
            series[row["trial_id"]] = {m: (frame["epoch"].tolist(), frame[m].tolist()) for m in MASK_METRICS}
    best = next((t for t in trials.trials if front and t.trial_id == front[0]["trial_id"]), None)
    run_id = (best.last_result or {}).get("mlflow_run_id") if best else None
    return {"series": series, "best_run": run_id, "client": records.client(state.tracking_uri),
            "best_label": best and f"trial {best.trial_id}"}


def mask_section(folder: Path, *, series: dict, best_run: str | None, client, footer: str, what: str,
                 best_label: str | None = None, why_not: str = "") -> tuple[list[Path], str]:
    """masks.png and the best run's mix grids (copied into the report folder), and their Markdown."""
    from trainables.mix_pictures import ARTIFACT_FOLDER

    made, lines = [], ["## The generator's masks", ""]
    if series:
        made.append(figures.mask_curves(folder / "masks.png", series=series, footer=footer,
                                        title=f"{what}: G's mask by epoch"))
        lines += ["G's mask M[:,0] (the forget side's share) over each epoch's generator mixes: its mean (an even "
                  "blend is 0.5, where every form starts) and its std within an image (0 = a constant blend).",
                  "", "![the generator's mask by epoch](masks.png)", ""]
    grids: list[str] = []
    if best_run and client is not None:
        try:
            local = Path(client.download_artifacts(best_run, ARTIFACT_FOLDER, str(folder)))
            grids = sorted(p.name for p in local.glob("*.png"))
        except Exception as error:   # noqa: BLE001 - a run without grids (no generator, or older) is normal
            why_not = why_not or f"the best run has no {ARTIFACT_FOLDER}/ ({type(error).__name__})"
    if grids:
        lines += [f"Mixes of the best run, {best_label} (MLflow run `{best_run}`): the last step's first pairs "
                  "at the first and the last epoch. Rows: forget, retain, mask M[:,0] (colour bar 0-1), mix; "
                  "column titles: the pair's lambda and the mask's mean.", ""]
        lines += [f"![{name}]({ARTIFACT_FOLDER}/{name})\n" for name in grids]
    if not series and not grids:
        lines += [f"Not shown: {why_not or 'no run logged mask diagnostics (no generator)'}.", ""]
    return made, "\n".join(lines)


def searched_fields(configs: list[dict[str, Any]]) -> list[str]:
    """The config fields whose values differ between trials: what the sweep searched."""
    return [k for k in configs[0] if len({repr(c.get(k)) for c in configs}) > 1]


def importances(study, metrics: list[str]) -> tuple[dict[str, dict[str, float]], str, str]:
    """fANOVA importances per objective over the trials of one fidelity (mixsweep/fidelity.py), what those
    trials are; or ({}, "", the reason they cannot be computed)."""
    import optuna

    chosen = one_fidelity(study)
    if len(chosen.trials) < MIN_TRIALS:
        return {}, "", (f"{len(chosen.trials)} completed trial(s), and no rung that {MIN_TRIALS} trials reached; "
                        f"fANOVA needs at least {MIN_TRIALS} trials of one fidelity")
    scores = {}
    for i, metric in enumerate(metrics):
        try:
            scores[metric] = optuna.importance.get_param_importances(
                chosen.study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                target=(lambda t, i=i: t.values[i]))
        except (RuntimeError, ValueError) as error:   # e.g. every trial has the same value of each parameter
            return {}, "", f"fANOVA failed ({error})"
    return scores, chosen.label, ""


def best_section(front: list[dict[str, Any]], objectives: list[list[str]], searched: list[str], *,
                 multi: bool) -> str:
    metrics = [m for m, _ in objectives]
    lead = (f"The Pareto front: {len(front)} trials no other trial beats on every objective, best first by "
            f"{metrics[0]}. `best_config.yaml` holds the first one's full config."
            if multi else f"The trial with the best final {metrics[0]}, ranked as `mixsweep export` ranks (each trial "
                          "at its last reported epoch, a trial ASHA stopped included, its epochs cut to that one); "
                          "its full config is in `best_config.yaml`.")
    header = "| trial | epoch | " + " | ".join(metrics + searched) + " |"
    rule = "|---|---:|" + "---:|" * len(metrics + searched)
    lines = [f"| {r['trial_id']} | {int(r['epoch'])} | " + " | ".join(
        [_fmt(r[m]) for m in metrics] + [_fmt(r.get(k)) for k in searched]) + " |" for r in front]
    return "\n".join(["## Best config", "", lead, "", header, rule, *lines, ""])


def trials_section(rows: list[dict[str, Any]], objectives: list[list[str]], searched: list[str]) -> str:
    metrics = [m for m, _ in objectives]
    header = "| trial | Tune status | epoch | " + " | ".join(metrics + searched) + " |"
    rule = "|---|---|---:|" + "---:|" * len(metrics + searched)
    lines = [f"| {r['trial_id']} | {r['status']} | {_fmt(r['epoch'], 0)} | " + " | ".join(
        [_fmt(r[m]) for m in metrics] + [_fmt(r.get(k)) for k in searched]) + " |" for r in rows]
    return "\n".join(["## Every trial", "", header, rule, *lines, ""])


def sweep_hardware(state: sweep_state.SweepState) -> str:
    """The cluster as the sweep's parent run recorded it, and this machine's CPU model."""
    from trainables import records

    try:
        params = records.client(state.tracking_uri).get_run(state.parent_run_id).data.params
    except Exception:   # noqa: BLE001 - the report must not need MLflow; say what is unknown instead
        return f"cluster unknown (MLflow at {state.tracking_uri} unreachable); CPU: {evidence.cpu_model()}"
    nodes = params.get("cluster_nodes", "?")
    return (f"{_whole(nodes)} node(s), {_whole(params.get('cluster_CPU', '?'))} CPU, "
            f"{_whole(params.get('cluster_GPU', '?'))} GPU; CPU: {evidence.cpu_model()}")


def _whole(text: str) -> str:
    try:
        return f"{float(text):g}"
    except ValueError:
        return text


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.0f}" if digits == 0 else f"{value:.{digits}g}"
    return str(value)
