"""oracle_nll: a trial's margins under the pool's oracle Gaussians; checked against a plain loop, reported
by every evaluation of a config with judge_models, and refused as an objective without a pool."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from mixunlearn.config import ConfigError, UnlearnConfig
from mixunlearn.judge.objective import oracle_gaussians
from mixunlearn.run import prepare

TOL = 1e-9


def plain_nll(oracles, points, phi):
    per_group = []
    for idx in points.values():
        n = len(oracles)
        variances = [np.var(oracles[:, x], ddof=1) for x in idx]
        terms = []
        for x in idx:
            var = max(np.mean(variances) if n < 32 else np.var(oracles[:, x], ddof=1), 1e-8)
            mu = np.mean(oracles[:, x])
            terms.append(0.5 * math.log(2 * math.pi * var) + (phi[x] - mu) ** 2 / (2 * var))
        per_group.append(np.mean(terms))
    return float(np.mean(per_group))


@pytest.mark.parametrize("n_models", [8, 40])
def test_oracle_nll_matches_a_plain_loop_and_prefers_an_oracle_like_model(n_models):
    rng = np.random.default_rng(0)
    centre = rng.normal(0, 3, 60)
    oracles = centre + rng.normal(0, 1, (n_models, 60))
    points = {"forget": np.arange(0, 10), "retain": np.arange(10, 40), "test": np.arange(40, 60)}
    gaussians = oracle_gaussians(oracles, points)
    like_an_oracle = centre + rng.normal(0, 1, 60)
    memorised = like_an_oracle.copy()
    memorised[:10] += 6.0   # confident on the forget points, as f_D is
    for phi in (like_an_oracle, memorised, np.full(60, 50.0)):
        assert abs(gaussians.nll(phi) - plain_nll(oracles, points, phi)) < TOL
    assert gaussians.nll(like_an_oracle) < gaussians.nll(memorised)
    assert math.isfinite(gaussians.nll(np.full(60, -50.0)))


def test_a_config_with_judge_models_reports_oracle_nll_one_number_per_model(tmp_path):
    torch.set_num_threads(1)
    cfg = UnlearnConfig(dataset="tiny", model="cnn_small", task="random", ref_epochs=1, method="ga", epochs=1,
                        mia_samples=100, attack_draws=1, judge_models=3)
    prepared = prepare(cfg, device="cpu", cache_dir=tmp_path)
    assert prepared.judge is not None and prepared.judge.models == 3
    outputs = prepared.outputs(prepared.references.original)
    numbers = []
    for seed in (0, 5):
        prepared.cfg = cfg.replace(seed=seed)
        numbers.append(prepared.attack(outputs, prepared.accuracies(outputs))["oracle_nll"])
    assert math.isfinite(numbers[0]) and numbers[0] == numbers[1]
    # The pool's oracles are store entries: a second prepare trains none and reads the same Gaussians.
    records = sorted((tmp_path / "references").glob("*.json"))
    again = prepare(cfg, device="cpu", cache_dir=tmp_path)
    assert sorted((tmp_path / "references").glob("*.json")) == records
    assert again.judge.mean["forget"].tolist() == prepared.judge.mean["forget"].tolist()
    without = prepare(cfg.replace(judge_models=0), device="cpu", cache_dir=tmp_path)
    assert "oracle_nll" not in without.evaluate(without.references.original)


def test_oracle_nll_is_refused_as_an_objective_without_a_pool(tmp_path):
    from search_spaces import load_space
    from search_spaces._errors import SpaceError

    space = tmp_path / "s.yaml"
    document = {"base": {"dataset": "tiny", "method": "ga"}, "search": {"lr": {"low": 1e-4, "high": 1e-2}},
                "objectives": [{"metric": "oracle_nll", "mode": "min"}]}
    space.write_text(yaml.safe_dump(document))
    with pytest.raises(SpaceError, match="judge_models"):
        load_space(space)
    space.write_text(yaml.safe_dump({**document, "base": {**document["base"], "judge_models": 16}}))
    assert load_space(space).objectives[0].metric == "oracle_nll"
    with pytest.raises(ConfigError, match="judge_models"):
        UnlearnConfig(judge_models=2)
