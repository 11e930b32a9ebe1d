"""`mixsweep compare A B ...`: runs side by side in the paper's table, closest to Retrain in bold.

    mixsweep compare quick paper                              # the best trial of each sweep
    mixsweep compare sweeps/quick/export/best.yaml sweeps/q2/export/pareto/ab12_00003.yaml
    mixsweep compare quick 3f9c...e1 --tracking-uri http://head:5000 --out compare.md   # + an MLflow run id

Each input is one of:
- a sweep (a name under --storage, or its folder): its best trial (the first of the Pareto front when
  it has several objectives), as `mixsweep export` picks it;
- an exported config (best.yaml, pareto/<trial>.yaml): the trial its header names ("MLflow run <id>"),
  in the MLflow store of the sweep folder it sits in (else --tracking-uri);
- an MLflow run id (a `mixsweep train` run, a trial): in the store of --tracking-uri.
The numbers are each run's final rows in its metrics.csv artifact (f_D, Retrain, MixUnlearn). Columns
follow the task type (class: Train_r, Train_f, Test_r, Test_f, ASR; data-level: Train_r, Train_f,
Test, ASR) plus Avg. Gap; the Retrain and f_D rows are the first input's. Inputs measured against
different reference models (another data set, task or recipe, or the same recipe trained twice: the
sha256 each run recorded, mixsweep/provenance.py) are refused: their Retrain rows differ.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException

from mixunlearn.config import UnlearnConfig
from trainables import records
from trainables.trial import method_row

from . import provenance, state as sweep_state, tracking
from .errors import UsageError
from .tables import ORIGINAL, RETRAIN, PaperTable, paper_table

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
HEADER_RUN = re.compile(r"MLflow run ([0-9a-f]{32})")
# Common fields that change neither the split nor f_D / Retrain (a method's own fields never do): runs
# differing only in these share the Retrain row.
NOT_REFERENCE = {"method", "targets", "seed", "device", "eval_batch_size", "mia_samples", "data_root", "eval_seed",
                 "attack_draws"}
REFERENCE_FIELDS = [name for name in UnlearnConfig.common_fields() if name not in NOT_REFERENCE]


@dataclass(frozen=True)
class Compared:
    label: str
    tracking_uri: str
    run_id: str


@dataclass
class Comparison:
    table: PaperTable
    title: str
    inputs: list[Compared]


def compare(inputs: list[str], *, storage: str | None = None, tracking_uri: str | None = None) -> Comparison:
    if not inputs:
        raise UsageError("compare: give at least one sweep, exported config or MLflow run id")
    resolved = [resolve(item, storage=storage, tracking_uri=tracking_uri) for item in inputs]
    labels = unique_labels([c.label for c in resolved])
    rows, configs = {}, {}
    for compared, label in zip(resolved, labels):
        rows[label], configs[label] = load_run(compared)
    first = labels[0]
    for label in labels[1:]:
        differing = [k for k in REFERENCE_FIELDS if configs[first][k] != configs[label][k]]
        if differing:
            raise UsageError(f"{label}: its {differing[0]} is {configs[label][differing[0]]!r}, not "
                             f"{configs[first][differing[0]]!r} as in {first}, so it is measured against another "
                             "Retrain model; compare runs of one data set, task and reference recipe")
    provenance.refuse_mixed_references(
        {label: records.client(c.tracking_uri).get_run(c.run_id).data.tags for c, label in zip(resolved, labels)},
        command="compare")
    cfg = configs[first]
    table = paper_table(task_kind=task_kind(cfg), original=rows[first][ORIGINAL], retrain=rows[first][RETRAIN],
                        methods={label: rows[label][method_row(UnlearnConfig.from_dict(configs[label]))]
                                 for label in labels})
    title = f"{cfg['dataset']} / {cfg['task']} / {cfg['model']} / targets {cfg['targets']}"
    return Comparison(table=table, title=title, inputs=resolved)


def task_kind(cfg: dict) -> str:
    """The columns a config's task is judged by: "class" (Test_r, Test_f) or "data" (Test)."""
    return "class" if cfg["task"] == "class" or (cfg["task"] == "semi" and cfg["semi_base"] == "class") else "data"


def resolve(item: str, *, storage: str | None, tracking_uri: str | None) -> Compared:
    """The MLflow run an input names (see the module docstring)."""
    path = Path(item).expanduser()
    if path.is_file():
        return from_config_file(path, tracking_uri)
    try:
        state = sweep_state.load(item, storage)
    except UsageError:
        state = None
    if state is not None:
        return best_of_sweep(state)
    if RUN_ID.match(item):
        return Compared(label=item[:8], tracking_uri=tracking.tracking_uri(tracking_uri), run_id=item)
    raise UsageError(f"{item}: not a config file, a sweep under --storage ({sweep_state.resolve_storage(storage)}) "
                     "or an MLflow run id; pass one of those")


def from_config_file(path: Path, tracking_uri: str | None) -> Compared:
    found = HEADER_RUN.search(path.read_text())
    if found is None:
        raise UsageError(f"{path}: its header names no MLflow run; pass a config written by `mixsweep export`, "
                         "or the id of the MLflow run that trained it")
    sweep_folder = next((p for p in path.resolve().parents if (p / sweep_state.STATE_FILE).is_file()), None)
    if sweep_folder is not None and tracking_uri is None:
        state = sweep_state.load(str(sweep_folder), None)
        return Compared(label=f"{state.name}/{path.stem}", tracking_uri=state.tracking_uri, run_id=found.group(1))
    return Compared(label=path.stem, tracking_uri=tracking.tracking_uri(tracking_uri), run_id=found.group(1))


def best_of_sweep(state: sweep_state.SweepState) -> Compared:
    from ray import tune

    from .ablate import is_ablation
    from .export import pareto_front, trial_rows

    if is_ablation(state):
        raise UsageError(f"{state.name}: an ablation, not a sweep; its table is in `mixsweep report {state.name}`, "
                         "or compare one of its runs by MLflow run id")
    rows = trial_rows(tune.ExperimentAnalysis(state.experiment_path).trials, state)
    front = [r for r in pareto_front(rows, state.objectives) if r["mlflow_run_id"]]
    if not front:
        raise UsageError(f"sweep {state.name!r}: no trial reported its objectives; run or resume it first")
    return Compared(label=state.name, tracking_uri=state.tracking_uri, run_id=front[0]["mlflow_run_id"])


def load_run(compared: Compared) -> tuple[dict[str, dict[str, float]], dict]:
    """The run's metrics.csv rows and its config (from its params)."""
    from .ablate import metrics_rows

    client = records.client(compared.tracking_uri)
    try:
        run = client.get_run(compared.run_id)
        rows = metrics_rows(client, compared.run_id)
    except (MlflowException, OSError) as error:   # no such run, or no metrics.csv in it
        raise UsageError(f"{compared.label}: MLflow run {compared.run_id} in {compared.tracking_uri} has no "
                         f"results ({str(error).splitlines()[0]}); pick a run that finished") from None
    cfg = UnlearnConfig.from_params(run.data.params, source=f"MLflow run {compared.run_id} params")
    missing = [name for name in (ORIGINAL, RETRAIN, method_row(cfg)) if name not in rows]
    if missing:
        raise UsageError(f"{compared.label}: the metrics.csv of MLflow run {compared.run_id} has no {missing[0]} "
                         "row; pick a run of a sweep's trial or of `mixsweep train`")
    config = cfg.to_dict()
    return rows, config


def unique_labels(labels: list[str]) -> list[str]:
    """The labels, with #2, #3 ... on repeats (the same sweep given twice stays two rows)."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return out


def write(comparison: Comparison, out: str | Path) -> tuple[Path, Path]:
    """The table as Markdown at `out` and as CSV beside it (same stem)."""
    markdown = Path(out).expanduser()
    if markdown.suffix != ".md":
        raise UsageError(f"--out {out}: give a Markdown file name ending in .md (the CSV goes beside it)")
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(document(comparison))
    csv_path = markdown.with_suffix(".csv")
    csv_path.write_text(comparison.table.csv_text())
    return markdown, csv_path


def document(comparison: Comparison) -> str:
    sources = "; ".join(f"{c.label}: MLflow run `{c.run_id}`" for c in comparison.inputs)
    return f"# {comparison.title}\n\nRuns: {sources}.\n\n{comparison.table.markdown()}"
