"""A real two-method benchmark (GA and NegGrad+, 2 trials each, 2 seeds) on tiny real Fashion-MNIST.

The first benchmark runs in this process on the module's local 2-CPU Ray (its method processes join that
Ray by address), logging over HTTP to the session's MLflow server; the tests read what it left, as a
user would, recompute the table from the seed runs' MLflow metrics, and run it again with one more
seed. The second is `mixsweep benchmark` in its own process group (one method and one seed, to stay
short), SIGKILLed while a trial runs after another has ended, then `mixsweep resume`d.
"""
from __future__ import annotations

import csv
import io
import math
import os
import signal
import statistics
import subprocess
import sys
import time

import pytest
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from agreement import assert_records_agree
from mixsweep import benchmark_state, state as sweep_state
from mixsweep.cli import main

pytestmark = pytest.mark.slow

NAME = "two-methods"
# The sweep tests' data and reference recipe (the session cache's f_D and Retrain serve them all).
BASE = {"dataset": "fashion_mnist", "train_subset": 40, "test_subset": 20, "task": "class", "forget_class": 0,
        "model": "cnn_small", "ref_epochs": 3, "mia_samples": 100, "eval_batch_size": 512}
METHODS = {"ga": "GA", "neggrad_plus": "NegGrad+"}
SEEDS = [0, 1]
WAIT_S = 600


def write_plan(folder, *, seeds=SEEDS, budget=None, base=None, methods=tuple(METHODS)):
    for method in methods:   # each method's own space: its fields, one searched
        space = {"base": {"method": method, "dataset": "fashion_mnist", "model": "cnn_small", "epochs": 2,
                          "batch_size": 16},
                 "search": {"batch_size": {"choices": [16, 32]}}, "sweep": {"trials": 9}}
        (folder / "spaces").mkdir(exist_ok=True)
        (folder / "spaces" / f"{method}.yaml").write_text(yaml.safe_dump(space))
    plan = {"base": base or BASE, "methods": [f"spaces/{m}.yaml" for m in methods],
            "budget": budget or {"trials": 2, "concurrency": 2, "grace_epochs": 1}, "seeds": seeds}
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def children(client: MlflowClient, experiment_id: str, run_id: str) -> list:
    return client.search_runs([experiment_id], run_view_type=ViewType.ALL, max_results=1000,
                              filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")


def tree(client: MlflowClient, state) -> dict[str, tuple]:
    """{method: (its sweep run, its trial runs, its seed runs)} under the benchmark's run."""
    found = {}
    for sweep in children(client, state.experiment_id, state.parent_run_id):
        below = children(client, state.experiment_id, sweep.info.run_id)
        seeds = [r for r in below if r.data.tags.get("mixsweep.benchmark.role") == "seed_run"]
        trials = [r for r in below if r not in seeds]
        found[sweep.info.run_name.removeprefix(f"{state.name}.")] = (sweep, trials, seeds)
    return found


@pytest.fixture(scope="module")
def finished_benchmark(local_ray, mlflow_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("benchmark")
    storage = str(folder / "sweeps")
    status = main(["benchmark", str(write_plan(folder)), "--storage", storage, "--tracking-uri", mlflow_server,
                   "--name", NAME])
    assert status == 0
    state = benchmark_state.load(NAME, storage)
    client = MlflowClient(mlflow_server)
    return state, client, tree(client, state)


def test_one_benchmark_run_one_child_per_method_its_trials_and_tagged_seed_runs_under_it(finished_benchmark):
    state, client, found = finished_benchmark
    parent = client.get_run(state.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["mixsweep.kind"] == "benchmark"
    assert parent.data.params["budget_trials"] == "2" and parent.data.params["methods"] == "ga,neggrad_plus"
    assert set(found) == set(METHODS)
    data = {"fashion_mnist", "fashion_mnist/class"}   # D and D_f: the UI's Dataset cell at every level
    assert {d.dataset.name for d in parent.inputs.dataset_inputs} == data
    for method, (sweep, trials, seeds) in found.items():
        assert sweep.data.tags["mixsweep.kind"] == "sweep" and sweep.info.status == "FINISHED"
        assert {d.dataset.name for d in sweep.inputs.dataset_inputs} == data
        assert len(trials) == 2 and {t.data.tags["mixsweep.kind"] for t in trials} == {"trial"}
        assert {t.data.params["method"] for t in trials} == {method}
        assert sorted(int(r.data.tags["mixsweep.benchmark.seed"]) for r in seeds) == SEEDS
        assert {r.info.run_name for r in seeds} == {f"{method}/seed{s}" for s in SEEDS}
        assert {r.info.status for r in seeds} == {"FINISHED"}
        first, second = (r.data.params for r in seeds)
        assert {k for k in first if first[k] != second[k]} == {"seed"}     # one config, two seeds
        assert first["ref_seed"] == "0"                                     # the references stay shared
        # The seed runs re-run the best trial (lowest final avg_gap) as export cut it.
        best = min((t for t in trials if "avg_gap" in t.data.metrics), key=lambda t: t.data.metrics["avg_gap"])
        epoch = int(best.data.metrics["epoch"])
        assert first["batch_size"] == best.data.params["batch_size"] and int(first["epochs"]) == epoch
    logged = {a.path for a in client.list_artifacts(state.parent_run_id, "table")}
    assert logged == {"table/table.md", "table/table.csv", "table/table.tex"}
    assert {a.path for a in client.list_artifacts(state.parent_run_id, "plan")} >= {"plan/plan.yaml"}


def test_the_table_cells_are_mean_and_std_of_the_seed_runs_mlflow_metrics(finished_benchmark):
    state, _, found = finished_benchmark
    rows = list(csv.reader(io.StringIO((state.folder / "table.csv").read_text())))
    markdown = (state.folder / "table.md").read_text()
    for method, title in METHODS.items():
        assert f"| {title} |" in markdown
        row = next(r for r in rows if title in r)
        cells = [float(c) for c in row if _is_number(c)]
        seeds = found[method][2]
        for metric in ("avg_gap", "test_f", "asr"):
            values = [r.data.metrics[metric] for r in seeds]
            for expected in (statistics.fmean(values), statistics.stdev(values)):
                assert any(math.isclose(c, expected, rel_tol=1e-6, abs_tol=5e-3) for c in cells), (method, metric)


def test_report_writes_the_figures_into_the_benchmark_folder(finished_benchmark):
    state, _, _ = finished_benchmark
    assert main(["report", NAME, "--storage", state.storage]) == 0
    pngs = list((state.folder / "report").glob("*.png"))
    assert pngs and all(p.stat().st_size > 1000 for p in pngs)


def test_register_puts_each_methods_best_seed_run_in_the_registry_aliased_by_the_method(finished_benchmark):
    from mixsweep.benchmark import register_benchmark

    state, client, found = finished_benchmark
    registered = {r.alias: r for r in register_benchmark(state, name="benchmark-best")}
    assert set(registered) == set(METHODS)
    for method, (_, _, seeds) in found.items():
        best = min(seeds, key=lambda r: r.data.metrics["avg_gap"])
        assert registered[method].run_id == best.info.run_id
        version = client.get_model_version_by_alias("benchmark-best", method)
        assert version.run_id == best.info.run_id


def test_a_changed_budget_under_the_same_name_is_refused_in_one_sentence(finished_benchmark, tmp_path, capsys):
    state, _, _ = finished_benchmark
    plan = write_plan(tmp_path, budget={"trials": 3, "concurrency": 2, "grace_epochs": 1})
    assert main(["benchmark", str(plan), "--storage", state.storage, "--name", NAME]) == 2
    error = capsys.readouterr().err
    assert "budget" in error and NAME in error and "--name" in error


def test_a_plan_base_with_a_method_field_is_refused_naming_file_and_key(tmp_path, capsys):
    plan = write_plan(tmp_path, base={**BASE, "lr": 0.1})
    assert main(["benchmark", str(plan), "--storage", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "plan.yaml" in error and "base.lr" in error and not list(tmp_path.glob("*/benchmark.json"))


# ---- killed, resumed, extended ---------------------------------------------------------------------------

def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def trial_runs(client: MlflowClient, storage: str) -> list:
    path = benchmark_state.find("killed", storage)
    if path is None:
        return []
    state = benchmark_state.load_file(path)
    if not state.parent_run_id:
        return []
    return [t for _, trials, _ in tree(client, state).values() for t in trials]


def test_more_seeds_under_the_same_name_add_only_the_new_seed_runs(finished_benchmark, tmp_path):
    state, client, found = finished_benchmark
    plan = write_plan(tmp_path, seeds=[*SEEDS, 2])
    assert main(["benchmark", str(plan), "--storage", state.storage, "--name", NAME]) == 0
    after = tree(client, state)
    for method, (_, trials, seeds) in after.items():
        before = {r.info.run_id: r.info.end_time for r in found[method][2]}
        assert {t.info.run_id for t in trials} == {t.info.run_id for t in found[method][1]}   # no trial added
        new = [r for r in seeds if r.info.run_id not in before]
        assert [r.data.tags["mixsweep.benchmark.seed"] for r in new] == ["2"] and new[0].info.status == "FINISHED"
        assert {r.info.run_id: r.info.end_time for r in seeds if r.info.run_id in before} == before
    assert "seeds 0, 1, 2" in (state.folder / "table.md").read_text()


def test_a_killed_benchmark_resumes_to_one_record_of_each_trial_within_the_budget(tmp_path, cli_env, mlflow_server):
    """The driver is SIGKILLed while GA's second trial runs (its first has ended); `resume` finishes it. The
    method's Optuna study, Tune's experiment and MLflow then hold the same 3 trials, each in the state its
    ending means, none RUNNING (tests/mixsweep/agreement.py), and no trial that had ended trained again."""
    budget = {"trials": 3, "concurrency": 1, "grace_epochs": 1}
    plan = write_plan(tmp_path, seeds=[0], methods=["ga"], budget=budget)   # one method, one seed: time
    storage = str(tmp_path / "sweeps")
    command = [sys.executable, "-m", "mixsweep"]
    client = MlflowClient(mlflow_server)
    log = tmp_path / "driver.log"
    with log.open("w") as out:
        driver = subprocess.Popen([*command, "benchmark", str(plan), "--storage", storage, "--tracking-uri",
                                   mlflow_server, "--name", "killed"], env=cli_env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + WAIT_S
            while not ({r.info.status for r in trial_runs(client, storage)} >= {"FINISHED", "RUNNING"}):
                assert driver.poll() is None, f"the benchmark ended before it could be killed:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        finally:
            os.killpg(driver.pid, signal.SIGKILL)   # the driver, its method processes and its local Ray
            driver.wait()
    before = {r.info.run_id: r.info.end_time for r in trial_runs(client, storage) if r.info.status != "RUNNING"}
    state = benchmark_state.load("killed", storage)
    assert client.get_run(state.parent_run_id).info.status == "RUNNING"   # nothing closed it: it was killed

    resumed = subprocess.run([*command, "resume", "killed", "--storage", storage], env=cli_env,
                             capture_output=True, text=True, timeout=WAIT_S)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert client.get_run(state.parent_run_id).info.status == "FINISHED"
    found = tree(client, state)
    runs = {t.info.run_id: t for _, trials, _ in found.values() for t in trials}
    for run_id, end_time in before.items():
        assert runs[run_id].info.end_time == end_time                    # not reopened
        steps = [m.step for m in client.get_metric_history(run_id, "epoch")]
        assert sorted(steps) == sorted(set(steps))                          # each epoch trained once
    assert set(found) == {"ga"}
    sweep = sweep_state.load(str(sweep_state.local_dir(state.method_storage, state.sweep_name("ga"))), None)
    endings = assert_records_agree(sweep, client, budget=budget["trials"])
    assert len(endings) == budget["trials"]                               # the budget, not one more
    _, trials, seeds = found["ga"]
    assert [r.data.tags["mixsweep.benchmark.seed"] for r in seeds] == ["0"]
    assert not [r for r in trials + seeds if r.info.status == "RUNNING"]
    assert (state.folder / "table.md").is_file()
