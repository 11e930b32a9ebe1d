"""Every shipped sweep preset loads and its paper-defaults trial runs one tiny step through `mixsweep train`.

The preset's own data set, task, model and targets are kept; only the sizes shrink (a few images per
class, one reference epoch, one unlearning epoch), so a broken preset or a config the platform cannot
run fails here rather than an hour into a cluster sweep.
"""
from __future__ import annotations

import pytest
import yaml
from mlflow.tracking import MlflowClient

from mixsweep.cli import main
from search_spaces import list_presets, load_space, preset_path

pytestmark = pytest.mark.slow

TINY_STEP = {"train_subset": 10, "test_subset": 10, "ref_epochs": 1, "epochs": 1, "batch_size": 8,
             "mia_samples": 50, "eval_batch_size": 256}


@pytest.mark.parametrize("preset", list_presets())
def test_a_shipped_preset_runs_a_tiny_step(preset, cache_dir, tmp_path, mlflow_server, capsys):
    space = load_space(preset_path(preset))
    assert space.objectives and space.search
    config = space.config_for({**space.paper_defaults(), **TINY_STEP})
    config_file = tmp_path / f"{preset}.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    assert main(["train", str(config_file), "--tracking-uri", mlflow_server, "--threads", "1"]) == 0
    run_id = capsys.readouterr().out.strip().splitlines()[-1].removeprefix("MLflow run ")
    run = MlflowClient(mlflow_server).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["dataset"] == config["dataset"] and run.data.params["model"] == config["model"]
    assert run.data.metrics["epoch"] == 1 and 0 <= run.data.metrics["avg_gap"] <= 100
