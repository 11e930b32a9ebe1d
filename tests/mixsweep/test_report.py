"""`mixsweep report` and `mixsweep compare` over a real two-objective sweep on tiny real data.

One 3-trial sweep per module (avg_gap down, test_r up: a Pareto search, so the report has every figure)
on a local 2-CPU Ray, trials logging over HTTP to a real MLflow server, then `mixsweep export`.
"""
from __future__ import annotations

import csv
import io
import re

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from agreement import assert_records_agree
from mixsweep import state as sweep_state
from mixsweep.cli import main
from trainables.mix_pictures import grid_name

pytestmark = pytest.mark.slow

NAME = "pareto-three"
BASE = {"dataset": "fashion_mnist", "train_subset": 40, "test_subset": 20, "task": "class", "forget_class": 0,
        "model": "cnn_small", "ref_epochs": 3, "epochs": 2, "batch_size": 16, "mia_samples": 100,
        "eval_batch_size": 512}
SEARCH = {"alpha": {"low": 0.1, "high": 4.0, "log": True}, "omega": {"low": 0.5, "high": 2.0}}
OBJECTIVES = [{"metric": "avg_gap", "mode": "min"}, {"metric": "test_r", "mode": "max"}]
PAPER_CLASS_HEADER = "| method | runs | Train_r | Train_f | Test_r | Test_f | ASR | Avg. Gap |"


@pytest.fixture(scope="module")
def sweep(local_ray, mlflow_server, space_writer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report-sweep")
    space = space_writer(folder / "pareto.yaml", base=BASE, search=SEARCH, objectives=OBJECTIVES)
    storage = folder / "sweeps"
    assert main(["run", str(space), "--trials", "3", "--concurrency", "2", "--storage", str(storage),
                 "--tracking-uri", mlflow_server, "--name", NAME]) == 0
    assert main(["export", NAME, "--storage", str(storage)]) == 0
    return sweep_state.load(NAME, str(storage)), MlflowClient(mlflow_server)


def figures_named(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def test_sweep_report_has_every_figure_it_names_as_a_png(sweep, tmp_path):
    state, _ = sweep
    out = tmp_path / "report"
    assert main(["report", NAME, "--storage", state.storage, "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    named = figures_named(markdown)
    # ... then G's mask by epoch and the best trial's mix grids (first and last epoch, G's and f_U's mixes).
    assert named == ["history.png", "pareto.png", "importances.png", "curves.png", "masks.png"] + [
        f"mix_grids/{grid_name(e, k)}" for e in (1, 2) for k in ("generator", "unlearner")]
    for name in named:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 200
    assert (out / "best_config.yaml").is_file()
    assert "fANOVA" in markdown and "## Best config" in markdown and "## Every trial" in markdown
    # One fidelity per figure, and the figure says which (FIFO: every trial ran its epochs).
    assert "fANOVA (seed 0) over the 3 completed trials" in markdown
    assert "of the 3 completed trials on the front" in markdown
    # The evidence: what ran and where, in the Markdown (the figures carry it in their footers).
    assert "fashion_mnist / class" in markdown and "CPU" in markdown and "ray " in markdown and "torch " in markdown


def test_a_pareto_sweeps_trials_are_complete_in_optuna_with_each_epochs_values(sweep):
    """Several objectives follow the same rules: COMPLETE with the last epoch's values, MLflow FINISHED,
    and each epoch's values kept (Optuna has no intermediate values for several objectives)."""
    state, client = sweep
    endings = assert_records_agree(state, client, budget=3)
    assert set(endings.values()) == {"completed"}


def test_report_lands_in_the_sweep_folder_by_default(sweep):
    state, _ = sweep
    assert main(["report", str(state.local_dir)]) == 0
    assert (state.local_dir / "report" / "report.md").is_file()


def test_compare_puts_sweep_and_exported_config_in_the_paper_format(sweep, tmp_path, capsys):
    state, client = sweep
    exported = sorted((state.export_dir / "pareto").glob("*.yaml"))
    assert exported
    capsys.readouterr()
    out = tmp_path / "compare.md"
    assert main(["compare", NAME, str(exported[-1]), "--storage", state.storage, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert PAPER_CLASS_HEADER in printed and PAPER_CLASS_HEADER in out.read_text()

    rows = {row["method"]: row for row in csv.DictReader(io.StringIO(out.with_suffix(".csv").read_text()))}
    assert list(rows) == ["Retrain", "f_D", NAME, f"{NAME}/{exported[-1].stem}"]

    # Independently: the first input's metrics.csv gives the Retrain and f_D rows.
    front_runs = {re.search(r"MLflow run ([0-9a-f]{32})", p.read_text()).group(1) for p in exported}
    first_run = re.search(rf"{NAME}: MLflow run `([0-9a-f]{{32}})`", printed).group(1)
    assert first_run in front_runs   # a sweep stands for a trial of its Pareto front
    path = client.download_artifacts(first_run, "metrics.csv", str(tmp_path))
    with open(path, newline="") as handle:
        recorded = {row["model"]: row for row in csv.DictReader(handle)}
    columns = {"Train_r": "train_r", "Train_f": "train_f", "Test_r": "test_r", "Test_f": "test_f", "ASR": "asr",
               "Avg. Gap": "avg_gap"}
    for name in ("Retrain", "f_D"):
        for column, metric in columns.items():
            assert float(rows[name][column]) == pytest.approx(float(recorded[name][metric]))

    # One run per compared row: no interval, so no row is closest to Retrain with confidence, and the table
    # says so instead of bolding the nearest number.
    compared = [NAME, f"{NAME}/{exported[-1].stem}"]
    for m in (*compared, "f_D"):
        assert rows[m]["closest_to_retrain"] == ""
    assert not any("**" in line for line in printed.splitlines() if line.startswith("| "))
    assert "No row is closest with confidence in Train_r" in printed


def test_compare_refuses_an_input_it_cannot_resolve(tmp_path, capsys):
    assert main(["compare", "no-such-sweep", "--storage", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "no-such-sweep" in error and "MLflow run id" in error
