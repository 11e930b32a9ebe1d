"""A real 2-variant x 2-seed ablation on tiny real data: its child runs, its table, its report.

One ablation per module (`mixsweep ablate` on a local 2-CPU Ray, trials logging over HTTP to a real
MLflow server); the tests read what it left behind, as a user would, and recompute the table from
the children's MLflow records independently of mixsweep's code.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics

import pytest
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from PIL import Image

from mixsweep import state as sweep_state
from mixsweep.cli import main
from trainables.mix_pictures import GRID_PIXELS, grid_name

pytestmark = pytest.mark.slow

NAME = "two-by-two"
# Real Fashion-MNIST images, 40 per class (the sweep tests' sizes, so the session cache's f_D and Retrain
# serve both); 2 unlearning epochs keep each run to seconds on one core.
BASE = {"dataset": "fashion_mnist", "train_subset": 40, "test_subset": 20, "task": "class", "forget_class": 0,
        "model": "cnn_small", "ref_epochs": 3, "epochs": 2, "batch_size": 16, "mia_samples": 100,
        "eval_batch_size": 512}
# Listed with the reference row second and metrics out of COLUMNS order: the table must keep the file's order.
VARIANTS = {"no_real": {"omega": 0.0}, "full": {}}
SEEDS = [0, 1]
METRICS = ["asr", "test_r", "avg_gap", "train_f"]


def write_plan(path, **changes):
    plan = {"base": BASE, "seeds": SEEDS, "metrics": METRICS, "variants": VARIANTS,
            **changes}
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def ablation(local_ray, mlflow_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ablation")
    storage = folder / "sweeps"
    status = main(["ablate", str(write_plan(folder / "plan.yaml")), "--concurrency", "2", "--storage", str(storage),
                   "--tracking-uri", mlflow_server, "--name", NAME])
    assert status == 0
    state = sweep_state.load(NAME, str(storage))
    client = MlflowClient(mlflow_server)
    children = client.search_runs([state.experiment_id], run_view_type=ViewType.ALL,
                                  filter_string=f"tags.`mlflow.parentRunId` = '{state.parent_run_id}'")
    return state, client, children


def read_csv(text: str) -> dict[str, dict[str, str]]:
    return {row["variant"]: row for row in csv.DictReader(io.StringIO(text))}


def retrain_row(client: MlflowClient, run_id: str, tmp_path) -> dict[str, float]:
    path = client.download_artifacts(run_id, "metrics.csv", str(tmp_path / run_id))
    with open(path, newline="") as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    return {k: float(v) for k, v in rows["Retrain"].items() if k != "model" and v}


def test_four_finished_children_named_by_variant_and_seed(ablation):
    state, client, children = ablation
    parent = client.get_run(state.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["mixsweep.kind"] == "ablation"
    assert {d.dataset.name for d in parent.inputs.dataset_inputs} == {"fashion_mnist", "fashion_mnist/class"}
    assert parent.data.params["variants"] == "no_real,full" and parent.data.params["seeds"] == "0,1"
    assert len(children) == 4
    assert {c.info.status for c in children} == {"FINISHED"}
    labels = {(c.data.tags["mixsweep.variant"], c.data.tags["mixsweep.seed"], c.info.run_name) for c in children}
    assert labels == {(v, str(s), f"{v}/seed{s}") for v in VARIANTS for s in SEEDS}
    logged = {a.path for a in client.list_artifacts(state.parent_run_id, "ablation")}
    assert logged == {"ablation/table.md", "ablation/table.csv"}


def test_table_equals_statistics_of_the_children_mlflow_metrics(ablation, tmp_path):
    state, client, children = ablation
    table = read_csv((state.local_dir / "ablation" / "table.csv").read_text())
    assert list(table) == ["no_real", "full", "Retrain"]          # rows in plan order, then Retrain
    header = next(csv.reader(io.StringIO((state.local_dir / "ablation" / "table.csv").read_text())))
    assert [h.removesuffix("_mean") for h in header if h.endswith("_mean")] == METRICS   # columns in plan order

    by_variant = {v: [c for c in children if c.data.tags["mixsweep.variant"] == v] for v in VARIANTS}
    retrain = {c.info.run_id: retrain_row(client, c.info.run_id, tmp_path) for c in children}
    means = {}
    for variant, runs in by_variant.items():
        for metric in METRICS:
            values = [r.data.metrics[metric] for r in runs]
            means[variant, metric] = statistics.fmean(values)
            assert float(table[variant][f"{metric}_mean"]) == pytest.approx(statistics.fmean(values), abs=1e-9)
            assert float(table[variant][f"{metric}_std"]) == pytest.approx(statistics.stdev(values), abs=1e-9)
            if metric == "avg_gap":   # Retrain's own gap is 0 by definition: no Δ against it
                assert table[variant][f"{metric}_delta_retrain"] == ""
            else:
                expected = statistics.fmean(values) - statistics.fmean(retrain[r.info.run_id][metric] for r in runs)
                assert float(table[variant][f"{metric}_delta_retrain"]) == pytest.approx(expected, abs=1e-9)
    for metric in METRICS:
        delta = float(table["no_real"][f"{metric}_delta_full"])
        assert delta == pytest.approx(means["no_real", metric] - means["full", metric], abs=1e-9)
        assert float(table["full"][f"{metric}_delta_full"]) == 0.0

    markdown = (state.local_dir / "ablation" / "table.md").read_text()
    first_table = markdown.split("Δ against")[0]
    assert first_table.index("| no_real |") < first_table.index("| full |") < first_table.index("| *Retrain* |")
    assert "| variant | seeds | asr | test_r | avg_gap | train_f |" in markdown


def test_every_child_logs_the_mask_diagnostics_each_epoch_and_the_mix_grids_as_pngs(ablation, tmp_path):
    state, client, children = ablation
    for child in children:
        run_id = child.info.run_id
        for metric in ("mask_forget_share", "mask_lambda_corr", "mask_spatial_std", "gen_loss", "mix_loss",
                       "real_loss", "unlearn_loss"):
            if metric == "real_loss" and child.data.tags["mixsweep.variant"] == "no_real":
                continue   # omega = 0: L_real is not computed
            assert sorted(m.step for m in client.get_metric_history(run_id, metric)) == [1, 2], metric
        share = client.get_metric_history(run_id, "mask_forget_share")
        assert all(0.0 <= m.value <= 1.0 for m in share)
        grids = sorted(a.path for a in client.list_artifacts(run_id, "mix_grids"))
        assert grids == sorted(f"mix_grids/{grid_name(e, k)}" for e in (1, 2) for k in ("generator", "unlearner"))
        local = client.download_artifacts(run_id, grids[0], str(tmp_path / run_id))
        with Image.open(local) as image:
            assert image.format == "PNG" and image.size == GRID_PIXELS


def test_no_real_differs_from_full_only_in_what_the_plan_changes(ablation):
    _, _, children = ablation
    params = {(c.data.tags["mixsweep.variant"], int(c.data.tags["mixsweep.seed"])): c.data.params for c in children}
    for seed in SEEDS:
        full, no_real = params["full", seed], params["no_real", seed]
        assert set(full) == set(no_real)
        assert {k for k in full if full[k] != no_real[k]} == {"omega"}
        assert float(no_real["omega"]) == 0.0
    for variant in VARIANTS:
        first, second = params[variant, 0], params[variant, 1]
        assert {k for k in first if first[k] != second[k]} == {"seed"}


def test_report_folder_holds_the_png_figures_its_markdown_names(ablation, tmp_path):
    state, _, _ = ablation
    out = tmp_path / "report"
    assert main(["report", str(state.local_dir), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    named = [line.split("](")[1].rstrip(")") for line in markdown.splitlines() if line.startswith("![")]
    # The bars, G's mask by epoch, and the best run's mix grids (first and last epoch, G's and f_U's mixes).
    assert named == ["bars.png", "masks.png"] + [f"mix_grids/{grid_name(e, k)}" for e in (1, 2)
                                                 for k in ("generator", "unlearner")]
    for name in named:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] > 200
            if name.startswith("mix_grids/"):
                assert image.size == GRID_PIXELS
    assert "| no_real |" in markdown and "Hardware:" in markdown
    assert read_csv((out / "table.csv").read_text()).keys() == {"no_real", "full", "Retrain"}


# ---- refused before anything starts (no Ray, no MLflow run) ---------------------------------------------

def test_a_missing_plan_file_is_refused_naming_it(tmp_path, capsys):
    assert main(["ablate", str(tmp_path / "nope.yaml"), "--storage", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "nope.yaml" in error and "no such plan file" in error


def test_a_plan_with_an_unknown_field_is_refused_naming_file_and_key(tmp_path, capsys):
    plan = write_plan(tmp_path / "bad.yaml", variants={"full": {}, "no_real": {"omgea": 0.0}})
    assert main(["ablate", str(plan), "--storage", str(tmp_path), "--tracking-uri",
                 f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    error = capsys.readouterr().err
    assert "bad.yaml" in error and "omgea" in error
    assert not (tmp_path / "m.db").exists()


def test_an_existing_ablation_name_is_refused(ablation, capsys):
    state, _, _ = ablation
    plan = state.space_file
    assert main(["ablate", plan, "--storage", state.storage, "--name", NAME]) == 2
    assert "already exists" in capsys.readouterr().err


def test_std_of_a_single_seed_is_undefined_not_zero():
    from mixsweep.tables import RunMeasure, ablation_table

    table = ablation_table([RunMeasure("full", 0, {"asr": 50.0}, {"asr": 60.0})], variants=["full"],
                           metrics=["asr"], seeds=[0])
    assert table.stats["full"]["asr"].mean == 50.0 and math.isnan(table.stats["full"]["asr"].std)
    assert table.delta_retrain("full", "asr") == -10.0


def test_the_table_refuses_runs_measured_against_other_references(ablation, tmp_path, capsys):
    from trainables.references import ORIGINAL_SHA256_TAG

    state, client, children = ablation
    odd = next(c for c in children if c.info.run_name == "no_real/seed1")
    assert len({c.data.tags[ORIGINAL_SHA256_TAG] for c in children}) == 1   # the one f_D every run used
    client.set_tag(odd.info.run_id, ORIGINAL_SHA256_TAG, "e" * 64)   # as if its node had trained its own f_D
    try:
        assert main(["report", str(state.local_dir), "--out", str(tmp_path / "report")]) == 2
    finally:
        client.set_tag(odd.info.run_id, ORIGINAL_SHA256_TAG, odd.data.tags[ORIGINAL_SHA256_TAG])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"mixsweep: error: the table of ablation {NAME}: ") and "no_real/seed1" in error
    assert "eeeeeeeeeeee" in error


def test_reuse_runs_only_the_new_seeds_and_tabulates_the_earlier_runs(ablation, tmp_path, capsys):
    """Seeds 1 and 2 with --reuse of the module's ablation (seeds 0 and 1): only seed 2 runs; seed 1's
    rows are the earlier runs themselves, in the table and the mask series."""
    state, client, children = ablation
    name = "two-by-two-more-seeds"
    plan = write_plan(tmp_path / "more_seeds.yaml", seeds=[1, 2])
    assert main(["ablate", str(plan), "--concurrency", "2", "--storage", state.storage, "--tracking-uri",
                 state.tracking_uri, "--name", name, "--reuse", NAME]) == 0
    assert "2 runs to run (2 more reused from two-by-two)" in capsys.readouterr().out
    later = sweep_state.load(name, state.storage)
    own = client.search_runs([later.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = "
                                                                  f"'{later.parent_run_id}'")
    assert sorted(r.info.run_name for r in own) == ["full/seed2", "no_real/seed2"]
    assert client.get_run(later.parent_run_id).data.params["reused_from"] == NAME

    earlier = {c.info.run_name: c for c in children}
    table = read_csv((later.local_dir / "ablation" / "table.csv").read_text())
    for variant in VARIANTS:
        new = next(r for r in own if r.info.run_name == f"{variant}/seed2")
        values = [earlier[f"{variant}/seed1"].data.metrics["avg_gap"], new.data.metrics["avg_gap"]]
        assert float(table[variant]["avg_gap_mean"]) == pytest.approx(statistics.fmean(values), abs=1e-9)
        assert table[variant]["n_seeds"] == "2"
    hardware = json.loads((state.local_dir / "ablation.json").read_text())["hardware"]
    assert f"Reused, same config and seed: 2 runs of ablation two-by-two (no_real/seed1, full/seed1), run on " \
           f"{hardware}." in (later.local_dir / "ablation" / "table.md").read_text()

    from mixsweep.ablate import load_info
    from mixsweep.report import ablation_masks
    masks = ablation_masks(later, load_info(later))
    assert masks["series"]["full"]["mask_forget_share"][0] == [1, 2]   # both seeds' epochs, reused one included
    assert masks["best_run"] in {earlier["full/seed1"].info.run_id, earlier["no_real/seed1"].info.run_id,
                                 *(r.info.run_id for r in own)}


def test_reuse_of_an_ablation_in_another_store_is_refused_naming_the_store(ablation, tmp_path, capsys):
    state, _, _ = ablation
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert main(["ablate", state.space_file, "--storage", state.storage, "--tracking-uri", other,
                 "--name", "elsewhere", "--reuse", NAME]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--reuse {NAME}: its runs are in {state.tracking_uri}" in error and f"--tracking-uri {state.tracking_uri}" in error
    assert not (tmp_path / "other.db").exists()
