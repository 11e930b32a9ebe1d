"""`mixsweep ablate PLAN.yaml`: every variant of an ablation plan over its seeds, as Ray Tune trials,
then a table of mean ± std per metric, Δ against `full` and Δ against Retrain.

    mixsweep ablate search_spaces/ablations/mixunlearn_components.yaml
    mixsweep ablate search_spaces/ablations/alpha_oat.yaml --address auto --gpus-per-trial 0.25 --storage /shared/sweeps

The runs are the trials of one Tune experiment, built exactly like a sweep's (mixsweep/sweep.py): the
same trainable and resources (`trainable_for`), the same MLflow parent run with one child per trial, the
same callback closing the children, the same `fit` (so `mixsweep resume NAME` continues an interrupted
ablation). Only the search differs: `PlanSearcher` hands out the plan's configs in plan order, no
Optuna and no early stopping — an ablation compares finished runs. The reference models are shared
without any help from here: they are cached by data, task, model, recipe and ref_seed, none of which
a plan's variants or seeds change.

After the trials, each child run is tagged with its variant and seed (`mixsweep.variant`,
`mixsweep.seed`) and renamed `<variant>/seed<k>`; the table is computed from the children's MLflow
records — the method's last-epoch metrics, and Retrain's from each run's metrics.csv — and written to
<sweep>/ablation/table.md and table.csv, and logged on the parent run under `ablation/`.
`mixsweep report NAME` rebuilds the same table (e.g. after a resume) with a bar chart.

`--reuse NAME` takes an earlier ablation's finished runs into this one's table wherever a (variant, seed)
has exactly the same config (run_key): on a CPU track where a run costs minutes, a plan that shares rows
with one already run (mixblock_answer_full's rows are mixblock_forms_full's) runs only its new rows. The
reused runs stay children of their own ablation; ablation.json, the parent run and table.md name them.
"""
from __future__ import annotations

import csv
import json
import os
import pickle
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.search import ConcurrencyLimiter, Searcher

from mixunlearn.config import UnlearnConfig
from search_spaces import AblationPlan, list_plans, load_plan
from search_spaces import plan_path as plan_path_of
from trainables import records
from trainables.trial import method_row

from . import cluster, evidence, provenance, state as sweep_state, tracking
from .console import ProgressTable
from .errors import UsageError
from .sweep import (REPORT_EVERY_S, fit, new_storage, parent_closed_on_error, run_config,
                    trainable_for, trial_dirname)
from .tables import RETRAIN, AblationTable, RunMeasure, ablation_table
from .ui import ui_hint

INFO_FILE = "ablation.json"      # beside mixsweep.json: marks the folder as an ablation and keeps the plan
TABLE_FOLDER = "ablation"        # <sweep>/ablation/table.md|csv, and the parent run's artifact folder
VARIANT_TAG = "mixsweep.variant"
SEED_TAG = "mixsweep.seed"
REFERENCE = "full"               # search_spaces' reference row; Δ is taken against it when the plan has it


@dataclass
class AblationInfo:
    """What the table needs beyond the sweep's state: the plan, in its order, and the evidence line."""
    plan_file: str
    variants: list[str]                 # rows, plan order
    seeds: list[int]
    metrics: list[str]                  # columns, plan order
    reference: str                      # "full", or the first variant when a plan has no "full"
    configs: dict[str, dict[str, Any]]  # variant -> full config (seed as in base)
    dataset: str
    task: str
    hardware: str                       # the Ray cluster the trials ran on (evidence.cluster_hardware)
    versions: dict[str, str]
    # --reuse: runs of earlier ablations taken as they are, [{variant, seed, run_id, ablation, hardware}]
    reused: list[dict[str, Any]] = field(default_factory=list)

    def save(self, folder: Path) -> Path:
        path = folder / INFO_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


def is_ablation(state: sweep_state.SweepState) -> bool:
    return (state.local_dir / INFO_FILE).is_file()


def load_info(state: sweep_state.SweepState) -> AblationInfo:
    return AblationInfo(**json.loads((state.local_dir / INFO_FILE).read_text()))


@dataclass
class AblationResult:
    state: sweep_state.SweepState
    info: AblationInfo
    table: AblationTable
    markdown: Path
    csv: Path


# ---- the search: the plan's configs, in order -----------------------------------------------------------

class PlanSearcher(Searcher):
    """Suggests the given configs one by one, then FINISHED. Tune's own BasicVariantGenerator cannot
    take whole configs that hold lists (data_classes, noisy_classes) as points to evaluate."""

    def __init__(self, configs: list[dict[str, Any]]) -> None:
        super().__init__()
        self.configs = [dict(c) for c in configs]
        self.next_index = 0

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        return True   # no metric to optimise, no param_space to sample

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.next_index >= len(self.configs):
            return Searcher.FINISHED
        self.next_index += 1
        return dict(self.configs[self.next_index - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass   # a plan does not adapt to results

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump({"configs": self.configs, "next_index": self.next_index}, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            saved = pickle.load(handle)
        self.configs, self.next_index = saved["configs"], saved["next_index"]


def run_key(config: dict[str, Any]) -> str:
    """A config's identity: the plan's runs are pairwise different (load_plan refuses twins; seeds differ)."""
    return json.dumps(UnlearnConfig.from_params(config, source="ablation run").to_dict(), sort_keys=True)


# ---- the command -----------------------------------------------------------------------------------------

def run_ablation(plan_file: str | Path, *, concurrency: int | None = None, cpus_per_trial: float = 1.0,
                 gpus_per_trial: float = 0.0, address: str | None = None, storage: str | None = None,
                 tracking_uri: str | None = None, name: str | None = None,
                 checkpoint_every: int = 1, references: str | None = None,
                 reuse: list[str] | None = None) -> AblationResult | None:
    """Run every (variant, seed) of the plan to the end, then write and log the table (None when the
    ablation was interrupted: `resume`, then `report`, finish it). `reuse`: earlier ablations (names under
    the storage, or folders) whose finished runs with the same config are taken instead of run again."""
    # ---- the user's input, all of it, before anything starts -------------------------------------------
    plan_path = Path(plan_file).expanduser().resolve()
    if not plan_path.is_file() and str(plan_file).removesuffix(".yaml") in list_plans():
        plan_path = plan_path_of(str(plan_file))   # a shipped plan's name
    if not plan_path.is_file():
        raise UsageError(f"{plan_file}: no such plan file; pass an ablation plan YAML or a shipped plan "
                         f"({', '.join(list_plans())})")
    plan = load_plan(plan_path)
    for flag, value in (("--concurrency", concurrency), ("--checkpoint-every", checkpoint_every)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} {value}: it must be a positive whole number")
    name = name or plan_path.stem
    storage_path = new_storage(name, storage, kind="ablation")
    uri = tracking.tracking_uri(tracking_uri)
    cluster.check_request(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
    runs = plan.runs()
    earlier = [earlier_ablation(other, storage, uri) for other in reuse or ()]

    reused = reused_runs(runs, earlier)
    taken = {(entry["variant"], entry["seed"]) for entry in reused}
    runs = [run for run in runs if (run.variant, run.seed) not in taken]

    with cluster.connected(address):
        cluster.check_resources(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
        concurrency = concurrency or trials_that_fit(cpus_per_trial, gpus_per_trial)
        experiment_id = tracking.ready_experiment(uri)
        state = sweep_state.SweepState(
            name=name, storage=storage_path, space_file=str(plan_path), tracking_uri=uri,
            experiment_id=experiment_id, parent_run_id="", trials=len(runs), concurrency=concurrency,
            cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, checkpoint_every=checkpoint_every,
            address=address, seed=0, objectives=[], scheduler="fifo",
            # A plan's curve_budget: the attackers at the last epoch only, the curves within that budget.
            attack_epochs=[] if plan.curve_budget is not None else None, curve_budget=plan.curve_budget,
            cache_dir=os.environ.get("MIXSWEEP_CACHE"),
            references=sweep_state.resolve_references(references, storage_path))
        info = plan_info(plan, plan_path, hardware=evidence.cluster_hardware())
        info.reused = reused
        state.parent_run_id = open_parent_run(state, info)
        with parent_closed_on_error(state):
            state.save()
            info.save(state.local_dir)
            from_earlier = (f" ({len(reused)} more reused from {', '.join(sorted({e['ablation'] for e in reused}))})"
                            if reused else "")
            print(f"ablation {name}: {len(plan.variants)} variants x {len(plan.seeds)} seeds, {len(runs)} runs to "
                  f"run{from_earlier}, {concurrency} at a time, {cpus_per_trial:g} CPU + {gpus_per_trial:g} GPU "
                  f"each; Tune results in {state.experiment_path}; MLflow {uri} (parent run "
                  f"{state.parent_run_id})", flush=True)
            print(f"MLflow UI: {ui_hint(uri, experiment_id, state.parent_run_id)}", flush=True)
            keys = {run_key(run.config): (run.variant, run.seed) for run in runs}
            complete = True
            if runs:   # every run reused: nothing for Tune to do, only the table
                complete = fit(make_tuner(state, [run.config for run in runs], keys), state,
                               next_step="mixsweep report")
                label_children(state, keys)
    if not complete:
        # A partial table logged as the ablation's result would read as final: wait for the rest.
        print(f"ablation {name} interrupted: `mixsweep resume {name}` runs the rest, then `mixsweep report {name}` "
              "writes and logs the table", flush=True)
        return None
    return write_table(state, info)


def earlier_ablation(other: str, storage: str | None, uri: str) -> tuple[sweep_state.SweepState, AblationInfo]:
    """The ablation named by --reuse, refused unless its runs are in this ablation's MLflow store (the table
    reads every run from one store)."""
    state = sweep_state.load(other, storage)
    if not is_ablation(state):
        raise UsageError(f"--reuse {other}: a sweep, not an ablation; name an ablation run by `mixsweep ablate`")
    if state.tracking_uri != uri:
        raise UsageError(f"--reuse {other}: its runs are in {state.tracking_uri}, not {uri}; pass "
                         f"--tracking-uri {state.tracking_uri}")
    return state, load_info(state)


def reused_runs(runs: list, earlier: list[tuple[sweep_state.SweepState, AblationInfo]]) -> list[dict[str, Any]]:
    """The plan's (variant, seed)s that an earlier ablation finished with exactly the same config, each with
    that run's id; the first ablation named wins where two have one."""
    done: dict[str, dict[str, Any]] = {}
    for state, info in earlier:
        for (variant, seed), run in finished_runs(state, info).items():
            done.setdefault(run_key({**info.configs[variant], "seed": seed}),
                            {"run_id": run.info.run_id, "ablation": state.name, "hardware": info.hardware})
    return [{"variant": run.variant, "seed": run.seed, **done[key]}
            for run in runs if (key := run_key(run.config)) in done]


def trials_that_fit(cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials the cluster holds at once: the default of --concurrency."""
    total = ray.cluster_resources()
    fits = int(total.get("CPU", 0.0) // cpus_per_trial)
    if gpus_per_trial > 0:
        fits = min(fits, int(total.get("GPU", 0.0) // gpus_per_trial))
    return max(1, fits)


def plan_info(plan: AblationPlan, plan_path: Path, *, hardware: str) -> AblationInfo:
    reference = REFERENCE if REFERENCE in plan.variants else next(iter(plan.variants))
    return AblationInfo(plan_file=str(plan_path), variants=list(plan.variants), seeds=list(plan.seeds),
                        metrics=list(plan.metrics), reference=reference, configs=plan.configs,
                        dataset=str(plan.base["dataset"]), task=str(plan.base["task"]), hardware=hardware,
                        versions=evidence.versions())


def open_parent_run(state: sweep_state.SweepState, info: AblationInfo) -> str:
    """The ablation's parent run: the plan as params, the plan file, the evidence as tags."""
    client = records.client(state.tracking_uri)
    settings = {
        "sweep_name": state.name, "plan_file": info.plan_file, "variants": ",".join(info.variants),
        "seeds": ",".join(map(str, info.seeds)), "metrics": ",".join(info.metrics), "reference": info.reference,
        "trials": state.trials, "concurrency": state.concurrency, "cpus_per_trial": state.cpus_per_trial,
        "gpus_per_trial": state.gpus_per_trial, "checkpoint_every": state.checkpoint_every,
        "storage": state.storage, "address": state.address or "local", "scheduler": "fifo",
        "reference_store": state.references, "reused_runs": len(info.reused),
        "reused_from": ",".join(sorted({entry["ablation"] for entry in info.reused})),
        **{f"cluster_{k}": v for k, v in cluster.resources_summary().items()},
    }
    tags = {"mixsweep.sweep_name": state.name, "mixsweep.hardware": info.hardware,
            "mixsweep.versions": evidence.versions_text(info.versions), **tracking.git_commit()}
    run_id = records.open_run(client, experiment_id=state.experiment_id, run_name=state.name, kind="ablation",
                              params=settings, tags=tags)
    client.log_artifact(run_id, info.plan_file, artifact_path="plan")
    return run_id


def make_tuner(state: sweep_state.SweepState, configs: list[dict[str, Any]],
               keys: dict[str, tuple[str, int]]) -> tune.Tuner:
    """The sweep's Tuner with the plan's configs as the search; the console shows each run's variant and
    seed (`keys`: run_key -> (variant, seed))."""
    reporter = ProgressTable(metrics=["avg_gap"], params=[], labels=keys, max_report_frequency=REPORT_EVERY_S)
    return tune.Tuner(
        trainable_for(state),
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(PlanSearcher(configs),
                                                                  max_concurrent=state.concurrency),
                                    num_samples=len(configs), reuse_actors=True,
                                    trial_dirname_creator=trial_dirname),
        run_config=run_config(state, reporter, (LabelChildRuns(state, keys),)))


# ---- naming the children -------------------------------------------------------------------------------

class LabelChildRuns(tune.Callback):
    """Tags a trial's child run with its variant and seed at its first result, so the MLflow UI shows
    `full/seed0` while the ablation runs (label_children catches up on trials that never reported)."""

    def __init__(self, state: sweep_state.SweepState, keys: dict[str, tuple[str, int]]) -> None:
        self.state = state
        self.keys = keys
        self.labelled: set[str] = set()

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info) -> None:
        if trial.trial_id in self.labelled:
            return
        try:
            if label_child(records.client(self.state.tracking_uri), self.state, trial, self.keys):
                self.labelled.add(trial.trial_id)
        except Exception:   # noqa: BLE001 - a name in the UI is not worth stopping the ablation
            pass


def label_child(client: MlflowClient, state: sweep_state.SweepState, trial: Trial,
                keys: dict[str, tuple[str, int]]) -> bool:
    """Tag and rename the trial's child run; False when the run does not exist (yet)."""
    run = records.find_child_run(client, experiment_id=state.experiment_id, parent_run_id=state.parent_run_id,
                                 trial_id=trial.trial_id)
    variant_seed = keys.get(run_key(trial.config))
    if run is None or variant_seed is None:
        return False
    variant, seed = variant_seed
    client.set_tag(run.info.run_id, VARIANT_TAG, variant)
    client.set_tag(run.info.run_id, SEED_TAG, str(seed))
    client.update_run(run.info.run_id, name=f"{variant}/seed{seed}")
    return True


def label_children(state: sweep_state.SweepState, keys: dict[str, tuple[str, int]]) -> None:
    client = records.client(state.tracking_uri)
    for trial in tune.ExperimentAnalysis(state.experiment_path).trials:
        label_child(client, state, trial, keys)


# ---- the table -------------------------------------------------------------------------------------------

def finished_runs(state: sweep_state.SweepState, info: AblationInfo) -> dict[tuple[str, int], Any]:
    """{(variant, seed): its finished child run}, the last one where a trial ran twice (retried after a lost
    driver). A run is placed by its tags, or, when it has none (a trial that finished under `mixsweep
    resume`, which does not label), by its params: every run of a plan has a config of its own."""
    keys = {run_key({**config, "seed": seed}): (variant, seed)
            for variant, config in info.configs.items() for seed in info.seeds}
    client = records.client(state.tracking_uri)
    children = client.search_runs(
        [state.experiment_id], filter_string=f"{records.trial_runs_of(state.parent_run_id)} "
                                             "AND attributes.status = 'FINISHED'",
        run_view_type=ViewType.ACTIVE_ONLY, max_results=10_000)
    latest: dict[tuple[str, int], Any] = {}
    for run in sorted(children, key=lambda r: r.info.end_time or 0):
        if VARIANT_TAG in run.data.tags:
            place = (run.data.tags[VARIANT_TAG], int(run.data.tags[SEED_TAG]))
        else:
            place = keys.get(run_key(run.data.params))
        if place is not None:
            latest[place] = run
    for entry in info.reused:   # --reuse: an earlier ablation's run, unless this one has run it since
        place = (entry["variant"], int(entry["seed"]))
        if place not in latest:
            run = client.get_run(entry["run_id"])
            if run.info.status == "FINISHED" and run.info.lifecycle_stage == "active":
                latest[place] = run
    return latest


def collect(state: sweep_state.SweepState, info: AblationInfo) -> list[RunMeasure]:
    """The finished child runs of the ablation (finished_runs): the method's last-epoch metrics and
    Retrain's (metrics.csv)."""
    # One download per run: MLflow's progress bar would print a line each.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    latest = finished_runs(state, info)
    provenance.refuse_mixed_references({f"{variant}/seed{seed}": run.data.tags for (variant, seed), run in
                                        latest.items()}, command=f"the table of ablation {state.name}")
    client = records.client(state.tracking_uri)
    measures = []
    for (variant, seed), run in latest.items():
        rows = metrics_rows(client, run.info.run_id)
        measures.append(RunMeasure(variant=variant, seed=seed, metrics=dict(run.data.metrics),
                                   retrain=rows.get(RETRAIN, {})))
    return measures


def metrics_rows(client: MlflowClient, run_id: str) -> dict[str, dict[str, float]]:
    """The run's metrics.csv (rows f_D, Retrain, MixUnlearn) as numbers; empty cells are left out."""
    with tempfile.TemporaryDirectory(prefix="mixsweep-metrics-") as tmp:
        path = Path(client.download_artifacts(run_id, "metrics.csv", tmp))
        with path.open(newline="") as handle:
            return {row["model"]: {k: float(v) for k, v in row.items() if k != "model" and v != ""}
                    for row in csv.DictReader(handle)}


def build_table(state: sweep_state.SweepState, info: AblationInfo) -> AblationTable:
    """The table of the ablation's finished runs, as MLflow records them now."""
    return ablation_table(collect(state, info), variants=info.variants, metrics=info.metrics, seeds=info.seeds,
                          reference=info.reference)


def write_table(state: sweep_state.SweepState, info: AblationInfo, *, echo: bool = True) -> AblationResult:
    """Compute the table from MLflow, write table.md and table.csv, log both on the parent run, print it
    (with `echo`)."""
    table = build_table(state, info)
    folder = state.local_dir / TABLE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    markdown = folder / "table.md"
    markdown.write_text(table_document(state, info, table))
    csv_path = folder / "table.csv"
    csv_path.write_text(table.csv_text())
    records.client(state.tracking_uri).log_artifacts(state.parent_run_id, str(folder), artifact_path=TABLE_FOLDER)
    missing = sum(len(info.seeds) - len(table.runs[v]) for v in info.variants)
    if echo:
        print(markdown.read_text(), flush=True)
        if missing:
            print(f"warning: {missing} of {len(info.variants) * len(info.seeds)} runs did not finish and are not in "
                  "the table; see their child runs in MLflow", flush=True)
        print(f"table: {markdown} and {csv_path} (also on the MLflow parent run under {TABLE_FOLDER}/)", flush=True)
    return AblationResult(state=state, info=info, table=table, markdown=markdown, csv=csv_path)


def table_document(state: sweep_state.SweepState, info: AblationInfo, table: AblationTable) -> str:
    titles = dict.fromkeys(method_row(UnlearnConfig.from_dict(c)) for c in info.configs.values())
    method = f"{' / '.join(titles)} on {info.dataset} / {info.task}"
    return "\n".join([
        f"# Ablation {state.name}: {method}", "",
        f"Plan: `{info.plan_file}`; seeds {', '.join(map(str, info.seeds))}; MLflow parent run "
        f"`{state.parent_run_id}` ({state.tracking_uri}).",
        f"Hardware: {info.hardware}. Versions: {evidence.versions_text(info.versions)}.", "",
        *reused_lines(info), table.markdown()])


def reused_lines(info: AblationInfo) -> list[str]:
    """Which rows' runs an earlier ablation ran (--reuse): those ran on its hardware and commit."""
    if not info.reused:
        return []
    by_ablation: dict[tuple[str, str], list[str]] = {}
    for entry in info.reused:
        by_ablation.setdefault((entry["ablation"], entry["hardware"]), []).append(
            f"{entry['variant']}/seed{entry['seed']}")
    return [f"Reused, same config and seed: {len(runs)} runs of ablation {name} ({', '.join(runs)}), run on "
            f"{hardware}." for (name, hardware), runs in by_ablation.items()] + [""]
