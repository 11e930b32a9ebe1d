"""`mixsweep benchmark PLAN.yaml`: every method's sweep under one equal budget, at once on one Ray cluster,
then each method's best config over seeds, in one table.

    mixsweep benchmark quick                                   # search_spaces/benchmarks/quick.yaml, CPU
    mixsweep benchmark paper --address auto --gpus-per-trial 0.25 --storage /shared/sweeps
    mixsweep resume quick                                      # after a kill: only what is missing runs
    mixsweep report quick                                      # the figures, in <bench>/report/

How it runs (files: mixsweep/benchmark_state.py):
- The driver connects to Ray (or starts a local one), opens the benchmark's MLflow run (kind
  "benchmark": the plan as params, the plan file as artifact) and starts one process per method
  (`python -m mixsweep.benchmark`), each joining the driver's Ray by its GCS address. Tune drives one
  experiment per process: two `Tuner.fit()` in one process share Tune's signal handlers and
  process-wide session state, so a process each is what lets the methods run at once without waiting
  for one another; Ray shares the cluster's CPUs and GPUs among them.
- A method's process runs the plain sweep code (`run_sweep`, or `resume_sweep` on a continuation) on
  the space the plan derives for it (the plan's base over the method's, the plan's budget and
  objective, search_spaces/_benchmark_plan.py): the same ASHA, grace and resources per trial for every
  method. The sweep's MLflow run nests under the benchmark's, its trials under it.
- As soon as its sweep has ended, the process picks its best trial as `mixsweep export` does (ASHA's
  truncation included: an early-stopped winner re-runs the epochs it was ranked at) and re-runs it with
  `seed` = each plan seed (`ref_seed` unchanged: one f_D and Retrain for all), through Tune with the same
  trainable (FIFO, no search). Each seed run is a child of the method's run, named `<method>/seed<s>`
  and tagged mixsweep.benchmark.role=seed_run, mixsweep.benchmark.seed=<s>.
- A diverged trial is a result: its sweep goes on. A method whose every trial diverged has no winner:
  its row is NaN, with a note under the table.
- When every process is done the driver refuses runs judged by different references
  (mixsweep/provenance.py), builds the table (mixsweep/benchmark_table.py) from the seed runs' final
  MLflow metrics, writes table.md, table.csv and table.tex into the benchmark's folder, logs them on its
  run under table/, and prints the Markdown.
Continuing: `mixsweep resume NAME` (or the same plan under the same name) resumes each unfinished sweep
with the sweep's own resume (a finished trial never trains again), restores unfinished seed runs, and runs
the missing ones; the same plan with more seeds adds only the new seed runs. Any other change of the plan
is refused.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.search import ConcurrencyLimiter

from mixunlearn.data import default_cache_dir
from mixunlearn.methods import METHODS
from search_spaces import BenchmarkPlan, load_benchmark_plan
from trainables import records
from trainables.references import RETRAIN_SHA256_TAG

from . import benchmark_state, cluster, evidence, provenance, state as sweep_state, tracking
from .ablate import PlanSearcher, metrics_rows, run_key
from .benchmark_state import BenchmarkState
from .benchmark_table import MethodRuns, benchmark_table
from .callback import close_leftovers
from .compare import task_kind
from .console import ProgressTable
from .errors import UsageError
from .resume import resume_sweep
from .sweep import (NAME, REPORT_EVERY_S, run_config, run_sweep, trainable_for, trial_dirname, trial_settings,
                    tune_environment)
from .tables import ORIGINAL, RETRAIN
from .ui import ui_hint

ROLE_TAG = "mixsweep.benchmark.role"       # "seed_run" on the re-runs of a method's best config
SEED_RUN = "seed_run"
SEED_TAG = "mixsweep.benchmark.seed"       # the seed of that re-run
METHOD_TAG = "mixsweep.benchmark.method"
SEEDS_TAG = "mixsweep.benchmark.seeds"     # the benchmark run's seeds: a tag, since a continuation adds some
TABLE_FOLDER = "table"                     # the benchmark run's artifact folder of table.md|csv|tex
REPORT_FOLDER = "report"
ENDED = (Trial.TERMINATED, Trial.ERROR)
EXIT_INCOMPLETE = 3                        # a method's process stopped before its sweep and seed runs ended


@dataclass
class BenchmarkResult:
    state: BenchmarkState
    table: Any                 # benchmark_table.BenchmarkTable
    markdown: Path
    csv: Path
    latex: Path


# ---- the driver ------------------------------------------------------------------------------------------

def run_benchmark(plan_file: str | Path, *, name: str | None = None, storage: str | None = None,
                  tracking_uri: str | None = None, address: str | None = None, cpus_per_trial: float | None = None,
                  gpus_per_trial: float | None = None, references: str | None = None) -> BenchmarkResult | None:
    """Run the plan to its table (None when interrupted: `mixsweep resume NAME` finishes it). Under the name
    of an existing benchmark, the plan must be the same but for its seeds: the new seeds' runs are added."""
    # ---- the user's input, all of it, before anything starts -------------------------------------------
    plan_path = benchmark_state.resolve_plan(str(plan_file))
    plan = load_benchmark_plan(plan_path)
    name = name or plan_path.stem
    if not NAME.match(name):
        raise UsageError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    storage_path = sweep_state.resolve_storage(storage)
    found = benchmark_state.find(name, storage_path)
    if found is not None:
        state = benchmark_state.load_file(found)
        refuse_changed(state, plan, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
        state.seeds = list(plan.seeds)
        return continue_benchmark(state, address=address)
    cpus_per_trial = 1.0 if cpus_per_trial is None else cpus_per_trial
    gpus_per_trial = 0.0 if gpus_per_trial is None else gpus_per_trial
    cluster.check_request(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
    uri = tracking.tracking_uri(tracking_uri)

    with cluster.connected(address):
        cluster.check_resources(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
        state = BenchmarkState(
            name=name, storage=storage_path, plan_file=str(plan_path), tracking_uri=uri,
            experiment_id=tracking.ready_experiment(uri), parent_run_id="", methods=[m.name for m in plan.methods],
            titles={m.name: METHODS[m.name].title for m in plan.methods}, seeds=list(plan.seeds),
            objective=list(plan.metric), budget=dataclasses.asdict(plan.budget), identity=plan.identity(),
            cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, address=address,
            references=sweep_state.resolve_references(references, storage_path),
            cache_dir=os.environ.get("MIXSWEEP_CACHE"))
        for method in plan.methods:
            path = state.space_path(method.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"# The space of {method.name} in benchmark {name}: {method.space_file} with the plan's "
                            f"base, budget and objective ({plan_path}).\n" + yaml.safe_dump(method.space, sort_keys=False))
        state.parent_run_id = open_benchmark_run(state, plan)
        state.save()
        return drive(state)


def resume_benchmark(name: str, *, storage: str | None = None, address: str | None = None) -> BenchmarkResult | None:
    """`mixsweep resume NAME` of a benchmark: what is missing runs, what ended is kept."""
    return continue_benchmark(benchmark_state.load(name, storage), address=address)


def continue_benchmark(state: BenchmarkState, *, address: str | None) -> BenchmarkResult | None:
    with cluster.connected(address or state.address):
        cluster.check_resources(cpus_per_trial=state.cpus_per_trial, gpus_per_trial=state.gpus_per_trial)
        client = records.client(state.tracking_uri)
        if client.get_run(state.parent_run_id).info.status != "RUNNING":
            client.update_run(state.parent_run_id, status="RUNNING")
        if records.INTERRUPTED_TAG in client.get_run(state.parent_run_id).data.tags:
            client.delete_tag(state.parent_run_id, records.INTERRUPTED_TAG)
        client.set_tag(state.parent_run_id, SEEDS_TAG, ",".join(map(str, state.seeds)))
        state.save()
        print(f"continuing benchmark {state.name} (MLflow run {state.parent_run_id})", flush=True)
        return drive(state)


def refuse_changed(state: BenchmarkState, plan: BenchmarkPlan, *, cpus_per_trial: float | None,
                   gpus_per_trial: float | None) -> None:
    """A benchmark continued under its name keeps its methods, spaces, base, budget, objective and resources."""
    before, now = state.identity, json.loads(json.dumps(plan.identity()))
    changed = next((key for key in ("methods", "budget", "objective") if before[key] != now[key]), None)
    if changed == "methods" and list(before["methods"]) == list(now["methods"]):
        changed = "base or method spaces"
    if changed is not None:
        raise UsageError(f"{plan.path}: its {changed} differ from those benchmark {state.name!r} ran with "
                         f"({state.plan_file}); only seeds may change under one name, so start it with --name")
    for flag, value, kept in (("--cpus-per-trial", cpus_per_trial, state.cpus_per_trial),
                              ("--gpus-per-trial", gpus_per_trial, state.gpus_per_trial)):
        if value is not None and value != kept:
            raise UsageError(f"{flag} {value:g}: benchmark {state.name!r} gives every trial {kept:g}; leave the "
                             "flag out to continue it, or start a new benchmark with --name")


def open_benchmark_run(state: BenchmarkState, plan: BenchmarkPlan) -> str:
    """The benchmark's MLflow run: the plan as params, the plan file and the method spaces as artifacts."""
    client = records.client(state.tracking_uri)
    params = {
        "benchmark_name": state.name, "plan_file": state.plan_file, "methods": ",".join(state.methods),
        "objective": plan.objective, "objective_metric": plan.metric.metric, "objective_mode": plan.metric.mode,
        **{f"budget_{k}": v for k, v in state.budget.items()}, **{f"base_{k}": v for k, v in plan.base.items()},
        "cpus_per_trial": state.cpus_per_trial, "gpus_per_trial": state.gpus_per_trial,
        "storage": state.storage, "address": state.address or "local", "reference_store": state.references,
        **{f"cluster_{k}": v for k, v in cluster.resources_summary().items()},
    }
    tags = {SEEDS_TAG: ",".join(map(str, state.seeds)), "mixsweep.hardware": evidence.cluster_hardware(),
            **tracking.git_commit()}
    run_id = records.open_run(client, experiment_id=state.experiment_id, run_name=state.name, kind="benchmark",
                              params=params, tags=tags)
    client.log_artifact(run_id, state.plan_file, artifact_path="plan")
    client.log_artifacts(run_id, str(state.space_path(state.methods[0]).parent), artifact_path="plan/spaces")
    return run_id


def drive(state: BenchmarkState) -> BenchmarkResult | None:
    """One process per method at once, then the table; the benchmark run is closed either way."""
    address = ray.get_runtime_context().gcs_address
    print(f"benchmark {state.name}: {len(state.methods)} methods x {state.budget['trials']} trials "
          f"({state.budget['concurrency']} at a time each), then seeds {', '.join(map(str, state.seeds))}; "
          f"{state.cpus_per_trial:g} CPU + {state.gpus_per_trial:g} GPU per trial; MLflow {state.tracking_uri}",
          flush=True)
    print(f"MLflow UI: {ui_hint(state.tracking_uri, state.experiment_id, state.parent_run_id)}", flush=True)
    client = records.client(state.tracking_uri)
    processes: list[MethodProcess] = []
    try:
        processes = [MethodProcess(state, method, address) for method in state.methods]
        codes = {p.method: p.wait() for p in processes}
    except BaseException:
        for process in processes:
            process.stop()
        client.set_tag(state.parent_run_id, records.INTERRUPTED_TAG, "true")
        records.close_run(client, state.parent_run_id, "KILLED")
        raise
    failed = {method: code for method, code in codes.items() if code != 0}
    if failed:
        client.set_tag(state.parent_run_id, records.INTERRUPTED_TAG, "true")
        records.close_run(client, state.parent_run_id, "KILLED")
        for method, code in failed.items():
            print(f"benchmark {state.name}: {method}'s process ended with status {code} before its seed runs "
                  f"were done (its output: {state.folder / 'logs' / f'{method}.log'})", flush=True)
        print(f"`mixsweep resume {state.name}` continues it", flush=True)
        return None
    result = write_table(state)
    records.close_run(client, state.parent_run_id, "FINISHED")
    return result


class MethodProcess:
    """`python -m mixsweep.benchmark FOLDER METHOD ADDRESS`, its output prefixed on the console and in
    <bench>/logs/<method>.log."""

    def __init__(self, state: BenchmarkState, method: str, address: str) -> None:
        self.method = method
        log = state.folder / "logs" / f"{method}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mixsweep.benchmark", str(state.folder), method, address],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
                [str(Path(__file__).resolve().parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])])})
        self.copier = threading.Thread(target=self.copy, args=(log,), name=f"output-{method}", daemon=True)
        self.copier.start()

    def copy(self, log: Path) -> None:
        with log.open("a") as handle:
            for line in self.process.stdout:
                handle.write(line)
                handle.flush()
                print(f"[{self.method}] {line}", end="", flush=True)

    def wait(self) -> int:
        code = self.process.wait()
        self.copier.join()
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


# ---- one method: its sweep, then its best config over the seeds ----------------------------------------

def method_main(argv: list[str]) -> int:
    """The process of one method (started by `drive`)."""
    folder, method, address = argv
    state = benchmark_state.load_file(Path(folder) / benchmark_state.STATE_FILE)
    try:
        with cluster.connected(address):
            sweep = method_sweep(state, method, address)
            if not sweep_complete(sweep):
                print(f"{method}: sweep {sweep.name} interrupted", flush=True)
                return EXIT_INCOMPLETE
            config = best_config(sweep)
            if config is None:
                return 0
            done = run_seeds(state, method, sweep, config)
            # issue 18 (mixsweep/audit.py): a plan's `audit: {models: N}` audits the winner after its seed runs
            if done and state.identity.get("audit"):
                from .audit import audit_benchmark_method
                done = audit_benchmark_method(state, method, sweep, config)
            return 0 if done else EXIT_INCOMPLETE
    except UsageError as error:
        print(f"mixsweep: error: {error}", flush=True)
        return 2


def method_sweep(state: BenchmarkState, method: str, address: str) -> sweep_state.SweepState:
    """The method's sweep, run (or resumed) to its end."""
    name = state.sweep_name(method)
    folder = sweep_state.local_dir(state.method_storage, name)
    if not (folder / sweep_state.STATE_FILE).is_file():
        return run_sweep(state.space_path(method), name=name, storage=state.method_storage,
                         cpus_per_trial=state.cpus_per_trial, gpus_per_trial=state.gpus_per_trial, address=address,
                         tracking_uri=state.tracking_uri, references=state.references,
                         nested_under=state.parent_run_id)
    sweep = sweep_state.load(str(folder), None)
    if not sweep_complete(sweep):
        resume_sweep(str(folder), address=address)
    else:
        print(f"{method}: sweep {name} already ended", flush=True)
    return sweep


def sweep_complete(sweep: sweep_state.SweepState) -> bool:
    """Whether every trial of the sweep (or seed experiment) has ended, by Tune's own record."""
    try:
        trials = tune.ExperimentAnalysis(sweep.experiment_path).trials
    except Exception:   # noqa: BLE001 - no experiment state yet: nothing has ended
        return False
    return len(trials) >= sweep.trials and all(t.status in ENDED for t in trials)


def best_config(sweep: sweep_state.SweepState) -> dict[str, Any] | None:
    """The winner's config as `mixsweep export` writes it (an ASHA-stopped winner cut to its ranked
    epochs); None when no trial reported the objective (every one diverged)."""
    from .export import export_sweep

    metric = sweep.objectives[0][0]
    trials = tune.ExperimentAnalysis(sweep.experiment_path).trials
    if not any(math.isfinite(_number((t.last_result or {}).get(metric))) for t in trials):
        print(f"sweep {sweep.name}: no trial reported a finite {metric} (every one diverged); no seed runs",
              flush=True)
        return None
    exported = export_sweep(str(sweep.local_dir))
    return yaml.safe_load(exported.configs[0].read_text())


def run_seeds(state: BenchmarkState, method: str, sweep: sweep_state.SweepState, config: dict[str, Any]) -> bool:
    """The best config once per plan seed: unfinished seed experiments restored, missing seeds run."""
    complete = True
    experiments = seed_experiments(state, sweep)
    for exp in experiments.values():
        if not sweep_complete(exp):
            tuner = tune.Tuner.restore(exp.experiment_path, trainable=seed_trainable(exp, method),
                                       resume_unfinished=True)
            complete = fit_seeds(tuner, exp) and complete
    covered = {seed for seeds in experiments for seed in seeds}
    missing = [seed for seed in state.seeds if seed not in covered]
    if not missing:
        return complete
    exp = sweep_state.SweepState(
        name=f"{sweep.name}.seeds-{'-'.join(map(str, missing))}", storage=state.method_storage,
        space_file=sweep.space_file, tracking_uri=sweep.tracking_uri, experiment_id=sweep.experiment_id,
        parent_run_id=sweep.parent_run_id, trials=len(missing), concurrency=min(state.budget["concurrency"], len(missing)),
        cpus_per_trial=sweep.cpus_per_trial, gpus_per_trial=sweep.gpus_per_trial,
        checkpoint_every=sweep.checkpoint_every, address=sweep.address, seed=0, objectives=[], scheduler="fifo",
        cache_dir=sweep.cache_dir, references=sweep.references, nested_under=state.parent_run_id,
        attack_epochs=[])   # the attackers at the last epoch only: the table reads no other
    exp.save()
    configs = [{**config, "seed": seed} for seed in missing]
    print(f"{method}: the best trial of {sweep.name} over seeds {', '.join(map(str, missing))}", flush=True)
    reporter = ProgressTable(metrics=[sweep.objectives[0][0]], params=[], max_report_frequency=REPORT_EVERY_S,
                             labels={run_key(c): (method, c["seed"]) for c in configs})
    tuner = tune.Tuner(
        seed_trainable(exp, method),
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(PlanSearcher(configs), max_concurrent=exp.concurrency),
                                    num_samples=len(configs), reuse_actors=True, trial_dirname_creator=trial_dirname),
        run_config=run_config(exp, reporter))
    return fit_seeds(tuner, exp) and complete


def seed_experiments(state: BenchmarkState, sweep: sweep_state.SweepState) -> dict[tuple[int, ...], sweep_state.SweepState]:
    """{seeds: its Tune experiment} of the seed runs started so far (named <sweep>.seeds-0-1)."""
    root = sweep_state.local_dir(state.method_storage, sweep.name).parent
    found = {}
    for path in sorted(root.glob(f"{sweep.name}.seeds-*/{sweep_state.STATE_FILE}")):
        seeds = tuple(int(s) for s in path.parent.name.rsplit(".seeds-", 1)[1].split("-"))
        found[seeds] = sweep_state.SweepState(**json.loads(path.read_text()))
    return found


def seed_trainable(exp: sweep_state.SweepState, method: str):
    """The sweep's trainable, its runs named <method>/seed<s> and tagged as seed runs."""
    settings = dataclasses.replace(trial_settings(exp), run_name=f"{method}/seed{{seed}}",
                                   run_tags=((ROLE_TAG, SEED_RUN), (METHOD_TAG, method), (SEED_TAG, "{seed}")))
    return trainable_for(exp, settings)


def fit_seeds(tuner: tune.Tuner, exp: sweep_state.SweepState) -> bool:
    """Tuner.fit of seed runs, then no run left open (the method's run is the sweep's: left as it is)."""
    tune_environment()
    interrupted = False
    try:
        tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    trials = tune.ExperimentAnalysis(exp.experiment_path).trials
    return close_leftovers(trials, tracking_uri=exp.tracking_uri, experiment_id=exp.experiment_id,
                           parent_run_id=exp.parent_run_id) and not interrupted


# ---- the table -------------------------------------------------------------------------------------------

@dataclass
class Collected:
    methods: list[MethodRuns]
    original: dict[str, float]
    retrain: dict[str, float]
    retrain_seconds: float
    task_kind: str
    notes: list[str]
    runs: dict[str, list[Any]]      # method -> its FINISHED seed runs (the registry's rows)


def method_sweep_state(state: BenchmarkState, method: str) -> sweep_state.SweepState | None:
    folder = sweep_state.local_dir(state.method_storage, state.sweep_name(method))
    return sweep_state.load(str(folder), None) if (folder / sweep_state.STATE_FILE).is_file() else None


def seed_runs(client: MlflowClient, sweep: sweep_state.SweepState) -> list[Any]:
    """Every seed run under the method's run (deleted ones left out), oldest end first."""
    runs = client.search_runs([sweep.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=10_000,
                              filter_string=f"tags.`{records.PARENT_TAG}` = '{sweep.parent_run_id}' AND "
                                            f"tags.`{ROLE_TAG}` = '{SEED_RUN}'")
    return sorted(runs, key=lambda r: r.info.end_time or 0)


def collect(state: BenchmarkState) -> Collected:
    """What the table needs, from MLflow: each method's seed runs' final metrics, f_D's and Retrain's."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = records.client(state.tracking_uri)
    methods, notes, tags, finished = [], [], {}, {}
    for method in state.methods:
        title = state.titles[method]
        sweep = method_sweep_state(state, method)
        runs = seed_runs(client, sweep) if sweep is not None else []
        latest: dict[int, Any] = {}
        diverged = set()
        for run in runs:
            seed = int(run.data.tags[SEED_TAG])
            if seed not in state.seeds:
                continue
            if run.info.status == "FINISHED":
                latest[seed] = run   # a seed run twice (a lost driver) counts once: the last
            elif run.data.tags.get(records.DIVERGED_TAG) == "true":
                diverged.add(seed)
        finished[method] = list(latest.values())
        for seed, run in latest.items():
            tags[f"{method}/seed{seed}"] = run.data.tags
        if not latest:
            notes.append(f"{title}: no seed run finished (every trial of its sweep diverged, or none reported "
                         f"{state.objective[0]}): its row is NaN.")
        if diverged - set(latest):
            notes.append(f"{title}: seed(s) {', '.join(map(str, sorted(diverged - set(latest))))} diverged and are "
                         "left out of its mean.")
        methods.append(MethodRuns(name=method, title=title,
                                  seeds={seed: dict(latest[seed].data.metrics) for seed in sorted(latest)}))
    provenance.refuse_mixed_references(tags, command=f"the table of benchmark {state.name}")
    first = next((runs[0] for runs in finished.values() if runs), None)
    rows = metrics_rows(client, first.info.run_id) if first is not None else {}
    seconds = retrain_seconds(state, first.data.tags.get(RETRAIN_SHA256_TAG, "")) if first is not None else math.nan
    base = next(iter(state.identity["methods"].values()))["base"]
    return Collected(methods=methods, original=rows.get(ORIGINAL, {}), retrain=rows.get(RETRAIN, {}),
                     retrain_seconds=seconds, task_kind=task_kind(base), notes=notes, runs=finished)


def retrain_seconds(state: BenchmarkState, sha256: str) -> float:
    """Retrain's training time: `train_seconds` of the reference store's record of that model (the shared
    store, then this machine's cache); NaN when no record names it."""
    local = Path(state.cache_dir or default_cache_dir()) / "references"
    for store in (state.references, str(local)):
        try:
            fs, root = pafs.FileSystem.from_uri(store if "://" in store else str(Path(store).resolve()))
            listing = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        except (OSError, ValueError):
            continue
        for info in listing:
            if info.type == pafs.FileType.File and info.path.endswith(".json"):
                with fs.open_input_stream(info.path) as stream:
                    record = json.loads(stream.read())
                if record.get("sha256") == sha256 and "train_seconds" in record:
                    return float(record["train_seconds"])
    return math.nan


def build_table(state: BenchmarkState) -> tuple[Any, Collected]:
    collected = collect(state)
    from .audit import benchmark_audits   # issue 18: the audit's KLOM and U-LiRA columns, when the plan has one
    table = benchmark_table(collected.methods, original=collected.original, retrain=collected.retrain,
                            retrain_seconds=collected.retrain_seconds, task_kind=collected.task_kind,
                            audits=benchmark_audits(state))
    return table, collected


def write_table(state: BenchmarkState, *, echo: bool = True) -> BenchmarkResult:
    """The table from MLflow as it is now: table.md|csv|tex in the benchmark's folder and on its run."""
    table, collected = build_table(state)
    folder = state.folder
    markdown, csv_path, latex = folder / "table.md", folder / "table.csv", folder / "table.tex"
    markdown.write_text(table_document(state, table, collected.notes))
    csv_path.write_text(table.csv_text())
    latex.write_text(table.latex())
    client = records.client(state.tracking_uri)
    for path in (markdown, csv_path, latex):
        client.log_artifact(state.parent_run_id, str(path), artifact_path=TABLE_FOLDER)
    if echo:
        print(markdown.read_text(), flush=True)
        print(f"table: {markdown}, {csv_path.name}, {latex.name} (also on the MLflow run under {TABLE_FOLDER}/)",
              flush=True)
    return BenchmarkResult(state=state, table=table, markdown=markdown, csv=csv_path, latex=latex)


def table_document(state: BenchmarkState, table: Any, notes: list[str]) -> str:
    metric, mode = state.objective
    lines = [f"# Benchmark {state.name}", "",
             f"Plan: `{state.plan_file}`; {state.budget['trials']} trials per method (ASHA, grace "
             f"{state.budget['grace_epochs']}), best by {metric} ({mode}); seeds {', '.join(map(str, state.seeds))}; "
             f"MLflow run `{state.parent_run_id}` ({state.tracking_uri}).", "", table.markdown()]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


# ---- the report and the registry -------------------------------------------------------------------------

def write_benchmark_report(state: BenchmarkState, out: str | Path | None = None) -> list[Path]:
    """`mixsweep report NAME` of a benchmark: the table again, and its figures in <bench>/report/."""
    from .benchmark_report import write_figures

    folder = Path(out).expanduser().resolve() if out else state.folder / REPORT_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    table = write_table(state, echo=False).table
    metric, mode = state.objective
    return write_figures(folder, table, sweep_objectives(state), objective=metric, mode=mode)


def sweep_objectives(state: BenchmarkState) -> dict[str, list[float]]:
    """{title: the objective of each of its sweep's trials, in start order}: the completed trials' final
    values; NaN for a trial ASHA stopped (an early epoch's value is not comparable: one fidelity,
    mixsweep/fidelity.py), one that diverged, failed or was lost."""
    client = records.client(state.tracking_uri)
    metric = state.objective[0]
    values = {}
    for method in state.methods:
        sweep = method_sweep_state(state, method)
        runs = [] if sweep is None else client.search_runs(
            [sweep.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=10_000,
            filter_string=f"tags.`{records.PARENT_TAG}` = '{sweep.parent_run_id}' AND "
                          f"tags.`{records.KIND_TAG}` = 'trial'", order_by=["attributes.start_time ASC"])
        values[state.titles[method]] = [
            float(r.data.metrics.get(metric, math.nan)) if completed_run(r) else math.nan
            for r in runs if r.data.tags.get(ROLE_TAG) != SEED_RUN]
    return values


def completed_run(run: Any) -> bool:
    """Whether a trial's run records a completed trial: FINISHED and not stopped early (mixsweep/endings.py)."""
    return run.info.status == "FINISHED" and run.data.tags.get(records.STOPPED_TAG) != "true"


def register_benchmark(state: BenchmarkState, *, name: str) -> list:
    """Each method's best seed run under `name`, aliased by the method."""
    from .registry import register_rows

    return register_rows(state, collect(state).runs, name=name)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


if __name__ == "__main__":
    sys.exit(method_main(sys.argv[1:]))
