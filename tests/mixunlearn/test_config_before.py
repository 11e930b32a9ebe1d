"""One config, one spelling: files the platform wrote before issue 19 (MixUnlearn's fields then a section of
UnlearnConfig, now its own Hyper) load to the configs they loaded to then.

tests/mixunlearn/fixtures/before_issue19/ holds two tiny sweeps' space files, `mixsweep export`'s best.yaml
and trials.parquet, and one trial's MLflow params per sweep, all written by commit 351be9b, and
loaded-before.json: what that commit's UnlearnConfig made of each (to_dict()).
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from mixunlearn.config import UnlearnConfig
from search_spaces import load_space

BEFORE = Path(__file__).parent / "fixtures" / "before_issue19"
LOADED = json.loads((BEFORE / "loaded-before.json").read_text())
# Fields added to a method since those files were written, with the defaults that keep the old behaviour.
ADDED_SINCE: dict[str, dict[str, object]] = {
    "mixunlearn": {"mixblock_upsample": "nearest", "lambda_concat": True, "gen_optimizer": "adam"},   # issue 19
    "ga": {},
}
# Fields every method gained since (issue 18: the attackers' own seed and draws, the oracle objective).
COMMON_ADDED_SINCE: dict[str, object] = {"eval_seed": 0, "attack_draws": 5, "judge_models": 0}


def assert_loads_as_before(cfg: UnlearnConfig, before: dict) -> None:
    now = cfg.to_dict()
    assert {k: now.get(k, "<missing>") for k in before} == before   # every field it had, the same value
    assert {k: now[k] for k in set(now) - set(before)} == {**COMMON_ADDED_SINCE, **ADDED_SINCE[cfg.method]}


@pytest.mark.parametrize("method", ["mixunlearn", "ga"])
def test_an_exported_best_config_from_before_loads_unchanged(method):
    text = (BEFORE / f"best-{method}.yaml").read_text()
    assert_loads_as_before(UnlearnConfig.from_dict(yaml.safe_load(text), source="best.yaml"),
                           LOADED[f"best-{method}.yaml"])


@pytest.mark.parametrize("method", ["mixunlearn", "ga"])
def test_an_exported_trials_table_from_before_loads_unchanged(method):
    rows = pq.read_table(BEFORE / f"trials-{method}.parquet").to_pylist()
    assert len(rows) == len(LOADED[f"trials-{method}.parquet"]) == 2
    for row, before in zip(rows, LOADED[f"trials-{method}.parquet"]):
        assert_loads_as_before(UnlearnConfig.from_params(row, source="trials.parquet"), before)


@pytest.mark.parametrize("sweep", ["before-mix", "before-ga"])
def test_mlflow_params_from_before_load_unchanged(sweep):
    params = json.loads((BEFORE / "mlflow-params.json").read_text())[sweep]["params"]
    assert all(isinstance(v, str) for v in params.values())   # as MLflow keeps them
    assert_loads_as_before(UnlearnConfig.from_params(params, source="MLflow params"),
                           LOADED[f"mlflow-params.json:{sweep}"])


@pytest.mark.parametrize("method", ["mixunlearn", "ga"])
def test_a_space_file_from_before_loads_to_the_base_its_best_trial_ran(method):
    # Both sweeps' best trial was their first, the base itself (seed_defaults).
    space = load_space(BEFORE / f"space-{method}.yaml")
    assert_loads_as_before(UnlearnConfig.from_dict(space.base), LOADED[f"best-{method}.yaml"])
