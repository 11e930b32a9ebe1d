"""`mixsweep audit CONFIG.yaml | SWEEP --models N`: judge a method config against a pool of oracles.

    mixsweep audit sweeps/quick/export/best.yaml --models 16          # an exported config (or any config YAML)
    mixsweep audit quick-ga --models 16 --metrics klom                # a sweep: its best config (export's pick)
    mixsweep audit best.yaml --models 16 --dry-run                    # what it needs, cached, and how long

An audit (EVALUATION.md, ARCHITECTURE.md "The judge") needs, for the config's (data, task, forget set, model,
recipe): N originals, N oracles and N held-out oracles (exact retraining's models), all entries of the
reference store every later audit shares (mixunlearn/judge/pool.py), and the method's N unlearned models
(the method on original m with seed m). Each is one Ray task (trainables/pool_jobs.py) with the sweep's
resource options (--cpus-per-trial, fractional --gpus-per-trial), trained under the store's cluster-wide
lock and committed as it finishes: a killed audit keeps what it finished, and the same command again
trains only what is missing. A model the store already has is never trained again, by this audit or by
another method's: the second method's audit trains its unlearned models only.

The rows: the method, doing nothing (the originals) and exact retraining (the held-out oracles), each
against the oracles (mixunlearn/judge/audit.py), with KLOM's split-half noise floor. The record: one MLflow
run under the method's run (an exported config's trial, a sweep's parent run, or a benchmark's method run;
top-level for a config of no run), holding the figures as metrics, the per-example Parquet, the log-log ROC
and a KLOM histogram per group; the same files in --out. A resumed audit reopens its run.
`--dry-run` prints the trainings and unlearning runs needed, how many are cached, and an estimate of their
time from the timed entries in the store; it starts nothing.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixunlearn.config import UnlearnConfig

from .audit_record import (AUDIT_TAG, KIND, ORIGINAL_ROW, RETRAIN_ROW, ROWS, audit_key, open_audit_run,
                           print_summary, record_run, write_outputs)
from .errors import UsageError

METRICS = ("klom", "ulira")


@dataclass
class Target:
    """What an audit judges and where its record goes."""
    cfg: UnlearnConfig
    label: str                       # the method row's name: the config's stem or the sweep's name
    tracking_uri: str
    parent_run_id: str | None        # the method's MLflow run; None: the audit run is top-level
    references: str | None           # the shared reference store; None = this machine's cache


@dataclass
class AuditResult:
    run_id: str
    figures: dict[str, float]        # "<row>/<figure>" -> value (mixunlearn/judge/audit.py AuditScores.figures)
    counts: dict[str, dict[str, int]]   # kind -> {"needed", "cached", "trained"}
    seconds: dict[str, float]        # pool training, unlearning runs, scoring (wall)
    folder: Path
    notes: list[str] = field(default_factory=list)


# ---- the input -------------------------------------------------------------------------------------------

def resolve_target(source: str, *, storage: str | None, tracking_uri: str | None,
                   references: str | None) -> Target:
    """A config YAML (an exported best.yaml names its trial's run and reference store in its header), or
    a sweep under --storage (its best config, as `export` picks it, under the sweep's parent run)."""
    from . import state as sweep_state, tracking
    from .export import references_of

    path = Path(source).expanduser()
    if path.is_file():
        from .train import read_config_file

        cfg, text = read_config_file(path)
        from .compare import HEADER_RUN
        found = HEADER_RUN.search(text)
        return Target(cfg, path.stem, tracking.tracking_uri(tracking_uri), found.group(1) if found else None,
                      references or os.environ.get("MIXSWEEP_REFERENCES") or references_of(text))
    try:
        state = sweep_state.load(source, storage)
    except UsageError:
        raise UsageError(f"{source}: neither a config file nor a sweep under --storage "
                         f"({sweep_state.resolve_storage(storage)}); pass a config YAML or a sweep name") from None
    from trainables import records

    from .compare import best_of_sweep
    best = best_of_sweep(state)
    run = records.client(state.tracking_uri).get_run(best.run_id)
    cfg = UnlearnConfig.from_params(run.data.params, source=f"MLflow run {best.run_id} params")
    return Target(cfg, state.name, state.tracking_uri, state.parent_run_id, references or state.references)


def parse_metrics(text: str | None) -> tuple[str, ...]:
    chosen = tuple(m.strip() for m in (text or ",".join(METRICS)).split(",") if m.strip())
    unknown = [m for m in chosen if m not in METRICS]
    if unknown or not chosen:
        raise UsageError(f"--metrics {text}: use a comma-separated subset of {','.join(METRICS)}")
    return chosen


# ---- what it needs -------------------------------------------------------------------------------------

KINDS = (("originals", "pool training"), ("oracles", "pool training"), ("held-out oracles", "pool training"),
         ("unlearned", "unlearning runs"))


def job_kinds(pool, cfg: UnlearnConfig) -> dict[str, list]:
    return {"originals": pool.originals(), "oracles": pool.oracles(), "held-out oracles": pool.heldout(),
            "unlearned": pool.unlearned(cfg)}


def plan(pool, cfg: UnlearnConfig) -> tuple[dict[str, dict[str, int]], dict[str, float | None]]:
    """Per kind: how many models, how many the store has; and an estimate of the missing ones' seconds
    from the store's timed entries of that kind (None: nothing of that kind timed yet)."""
    counts, estimate = {}, {}
    reference_seconds = [pool.trained_seconds(job) for job in pool.originals() + pool.oracles() + pool.heldout()]
    reference_seconds = [s for s in reference_seconds if s]
    for kind, jobs in job_kinds(pool, cfg).items():
        cached = [job for job in jobs if pool.cached(job) is not None]
        counts[kind] = {"needed": len(jobs), "cached": len(cached), "trained": 0}
        timed = [s for s in (pool.trained_seconds(job) for job in cached) if s]
        per_model = (sum(timed) / len(timed) if timed else
                     (sum(reference_seconds) / len(reference_seconds) if reference_seconds and kind != "unlearned"
                      else None))
        estimate[kind] = None if per_model is None else per_model * (len(jobs) - len(cached))
    return counts, estimate


def plan_text(counts: dict[str, dict[str, int]], estimate: dict[str, float | None], *, workers: float) -> str:
    lines = ["what this audit needs:"]
    for kind, _ in KINDS:
        c, e = counts[kind], estimate[kind]
        missing = c["needed"] - c["cached"]
        time_text = ("nothing to run" if missing == 0 else
                     f"~{e:.0f} s of training" if e is not None else "no timed entry of this kind in the store yet")
        lines.append(f"  {kind:<17} {c['needed']:>4} models, {c['cached']:>4} cached, {missing:>4} to run  ({time_text})")
    missing = {k: c["needed"] - c["cached"] for k, c in counts.items()}
    unknown = [k for k, e in estimate.items() if e is None and missing[k]]
    total = sum(e for e in estimate.values() if e is not None)
    if not any(missing.values()):
        lines.append("  estimate: everything is cached; the audit only scores")
    elif len(unknown) == sum(1 for m in missing.values() if m):
        lines.append("  estimate: none: the store holds no timed model of the kinds to run")
    else:
        lines.append(f"  estimate: {total:.0f} s of training, ~{total / max(workers, 1):.0f} s wall on {workers:g} "
                     "parallel tasks" + (f"; not counted, never timed: {', '.join(unknown)}" if unknown else ""))
    return "\n".join(lines)


# ---- the audit -----------------------------------------------------------------------------------------

def run_audit(source: str, *, models: int, metrics: str | None = None, dry_run: bool = False,
              storage: str | None = None, tracking_uri: str | None = None, address: str | None = None,
              references: str | None = None, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
              out: str | None = None) -> AuditResult | None:
    """The command: resolve the input, print the plan; unless a dry run, run the missing models as Ray tasks,
    score and record. Returns None for a dry run."""
    from . import cluster

    if models < 3:
        raise UsageError(f"--models {models}: an audit needs at least 3 models per pool (U-LiRA leaves a pair out)")
    chosen = parse_metrics(metrics)
    cluster.check_request(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
    target = resolve_target(source, storage=storage, tracking_uri=tracking_uri, references=references)
    folder = Path(out).expanduser() if out else Path("audits") / f"{target.label}-N{models}"
    if dry_run:
        pool = driver_pool(target, models)
        counts, estimate = plan(pool, target.cfg)
        print(plan_text(counts, estimate, workers=max(1.0, (os.cpu_count() or 1) / cpus_per_trial)))
        print("dry run: nothing started")
        return None
    with cluster.connected(address):
        cluster.check_resources(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
        return audit(target, models=models, metrics=chosen, cpus=cpus_per_trial, gpus=gpus_per_trial, folder=folder)


def driver_pool(target: Target, models: int, cache_dir: str | None = None):
    """The pool as the driver sees it (reads the store; trains nothing itself)."""
    from mixunlearn.data import load_data
    from mixunlearn.judge.pool import Pool
    from mixunlearn.tasks import make_split
    from trainables.references import trial_store

    data = load_data(target.cfg)
    store = trial_store(cache_dir, target.references, cluster=False)
    return Pool(target.cfg, data, make_split(target.cfg, data), store, models=models)


def audit(target: Target, *, models: int, metrics: tuple[str, ...] = METRICS, cpus: float = 1.0, gpus: float = 0.0,
          folder: Path, cache_dir: str | None = None, experiment_id: str | None = None) -> AuditResult:
    """Run the missing models on the connected Ray cluster, score, write `folder` and the MLflow run."""
    import ray

    from mixunlearn.judge.pool import ORIGINAL
    from trainables.pool_jobs import PoolSettings, pool_job

    pool = driver_pool(target, models, cache_dir)
    counts, estimate = plan(pool, target.cfg)
    print(plan_text(counts, estimate, workers=max(1.0, ray.cluster_resources().get("CPU", 1.0) / cpus)), flush=True)
    client, run_id = open_audit_run(target, models=models, metrics=metrics, experiment_id=experiment_id)
    print(f"audit of {target.label}: MLflow run {run_id} ({target.tracking_uri})", flush=True)
    status = "FAILED"
    try:
        settings = PoolSettings(config=target.cfg.to_dict(), models=models, cache_dir=cache_dir,
                                references=target.references, cpus=cpus, gpus=gpus)
        task = pool_job.options(num_cpus=cpus, num_gpus=gpus)
        kinds = job_kinds(pool, target.cfg)
        started = time.perf_counter()
        refs, kind_of, originals = [], {}, {}
        for kind, jobs in kinds.items():
            for job in jobs:
                if pool.cached(job) is not None:
                    continue
                # An unlearned model starts from its original: the task waits for the original's task.
                after = [originals[job.seed]] if kind == "unlearned" and job.seed in originals else []
                ref = task.remote(settings, job, *after)
                if job.role == ORIGINAL:
                    originals[job.seed] = ref
                refs.append(ref)
                kind_of[ref] = kind
        seconds = {"pool_training": 0.0, "unlearning_runs": 0.0}
        pending = list(refs)
        while pending:
            [ready], pending = ray.wait(pending, num_returns=1)
            done = ray.get(ready)
            kind = kind_of[ready]
            counts[kind]["trained"] += int(done.trained)
            seconds["unlearning_runs" if kind == "unlearned" else "pool_training"] += done.seconds if done.trained else 0.0
            print(f"  {done.job.label():<28} {'trained' if done.trained else 'found':>7} "
                  f"({done.seconds:.1f} s)  [{len(refs) - len(pending)}/{len(refs)}]", flush=True)
        seconds["farming_wall"] = time.perf_counter() - started
        started = time.perf_counter()
        scores = score_target(pool, target, metrics)
        seconds["scoring"] = time.perf_counter() - started
        write_outputs(folder, target, scores, counts, seconds)
        record_run(client, run_id, folder, scores, counts, seconds)
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status)
    print_summary(target, scores, counts, seconds, folder)
    return AuditResult(run_id, scores.figures(), counts, seconds, folder, scores.notes)


def score_target(pool, target: Target, metrics: tuple[str, ...]):
    from mixunlearn.judge.audit import groups, score

    assert target.label not in ROWS, f"a method row may not be named {target.label!r}"
    rows = {target.label: pool.margins(pool.unlearned(target.cfg)), ORIGINAL_ROW: pool.margins(pool.originals()),
            RETRAIN_ROW: pool.margins(pool.heldout())}
    points = groups(pool.split, n_test=len(pool.data.test_labels), seed=target.cfg.eval_seed)
    return score(rows, pool.margins(pool.oracles()), points, ulira_applicable=not pool.split.forget_classes,
                 metrics=metrics, seed=target.cfg.eval_seed)


# ---- a benchmark's audits (plan key `audit: {models: N}`) ------------------------------------------------

AUDIT_COLUMN_FIGURES = ("klom_forget_median", "ulira_auc")   # benchmark_table.AUDIT_COLUMNS' keys


def finished_audit(client, *, parent_run_id: str, key: str):
    """The FINISHED audit run of `key` under `parent_run_id`, or None."""
    experiment = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([experiment], f"tags.`{AUDIT_TAG}` = '{key}' AND tags.`mlflow.parentRunId` = "
                                            f"'{parent_run_id}' AND attributes.status = 'FINISHED'")
    return runs[0] if runs else None


def audit_benchmark_method(state, method: str, sweep, config: dict[str, Any]) -> bool:
    """A benchmark method's winner (`config`, as its seed runs ran it) audited under the method's sweep run,
    once: a finished audit of the same config is kept. Runs in the method's process, on the benchmark's Ray,
    with the benchmark's resources per task. True when the audit is there."""
    from mlflow.tracking import MlflowClient

    models = int(state.identity["audit"]["models"])
    target = Target(UnlearnConfig.from_dict(config), method, state.tracking_uri, sweep.parent_run_id,
                    state.references)
    if finished_audit(MlflowClient(state.tracking_uri), parent_run_id=sweep.parent_run_id,
                      key=audit_key(target.cfg, models, METRICS)) is not None:
        print(f"{method}: audit of its winner against {models} oracles already recorded", flush=True)
        return True
    print(f"{method}: auditing its winner against {models} oracles", flush=True)
    audit(target, models=models, cpus=state.cpus_per_trial, gpus=state.gpus_per_trial,
          folder=state.folder / "audits" / method, cache_dir=state.cache_dir)
    return True


def benchmark_audits(state) -> dict[str, dict[str, Any]]:
    """Row name (a method, "f_D", "Retrain") -> the audit columns as tables.Stat (value and interval), from
    each method's finished audit; {} for a plan without an audit. f_D's and exact retraining's figures are
    the same in every audit of one pool: the first method's are read."""
    from mlflow.tracking import MlflowClient

    from .benchmark import method_sweep_state
    from .tables import ORIGINAL, RETRAIN, Stat

    if not state.identity.get("audit"):
        return {}
    models = int(state.identity["audit"]["models"])
    client = MlflowClient(state.tracking_uri)
    out: dict[str, dict[str, Any]] = {}

    def stats(metrics: dict[str, float], row: str) -> dict[str, Any]:
        return {name: Stat(metrics.get(f"{row}/{name}", math.nan), math.nan, models,
                           metrics.get(f"{row}/{name}_low", math.nan), metrics.get(f"{row}/{name}_high", math.nan))
                if math.isfinite(metrics.get(f"{row}/{name}", math.nan)) else Stat(math.nan, math.nan, 0)
                for name in AUDIT_COLUMN_FIGURES}

    for method in state.methods:
        sweep = method_sweep_state(state, method)
        if sweep is None:
            continue
        experiment = sweep.experiment_id
        runs = client.search_runs([experiment], f"tags.`mixsweep.kind` = '{KIND}' AND tags.`mlflow.parentRunId` = "
                                                f"'{sweep.parent_run_id}' AND attributes.status = 'FINISHED'")
        if not runs:
            continue
        metrics = runs[0].data.metrics
        out[method] = stats(metrics, method)
        out.setdefault(ORIGINAL, stats(metrics, ORIGINAL_ROW))
        out.setdefault(RETRAIN, stats(metrics, RETRAIN_ROW))
        out.setdefault(NOISE_ROW, stats(metrics, NOISE_ROW))
    return out


NOISE_ROW = "noise"   # mixunlearn/judge/audit.py NOISE: KLOM between two halves of the oracles
