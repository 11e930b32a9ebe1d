"""A benchmark plan loads into one space per method (plan base over the method's, one budget, one
objective), and every impossible plan is refused at load time naming the file and the key."""
from __future__ import annotations

import pytest
import yaml

from search_spaces import (METRICS, PlanError, benchmark_path, list_benchmarks, load_benchmark_plan,
                           load_space)

BASE = {"dataset": "fashion_mnist", "train_subset": 40, "test_subset": 20, "task": "class", "forget_class": 0,
        "model": "cnn_small", "ref_epochs": 3}


def write(folder, *, plan=None, **changes):
    for method in ("ga", "neggrad_plus"):
        space = {"base": {"method": method, "model": "resnet18_cifar", "epochs": 3, "train_subset": 10},
                 "search": {"batch_size": {"choices": [16, 32]}},
                 "objectives": [{"metric": "test_f", "mode": "min"}], "sweep": {"trials": 50, "concurrency": 9}}
        (folder / f"{method}.yaml").write_text(yaml.safe_dump(space))
    document = plan or {"base": BASE, "methods": ["ga.yaml", {"space": "neggrad_plus.yaml"}],
                        "budget": {"trials": 4, "concurrency": 2, "grace_epochs": 1}, "seeds": [0, 1]}
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump({**document, **changes}, sort_keys=False))
    return path


def test_each_method_space_gets_the_plan_base_budget_and_objective(tmp_path):
    plan = load_benchmark_plan(write(tmp_path))
    assert [m.name for m in plan.methods] == ["ga", "neggrad_plus"]
    for method in plan.methods:
        (tmp_path / "derived.yaml").write_text(yaml.safe_dump(method.space))
        space = load_space(tmp_path / "derived.yaml")   # what the method's sweep runs
        assert space.base["model"] == "cnn_small" and space.base["train_subset"] == 40   # the plan's base wins
        assert space.base["epochs"] == 3 and space.base["method"] == method.name       # the method's own stay
        assert space.objectives[0].metric == "avg_gap"                                  # not the space's test_f
        assert (space.sweep.trials, space.sweep.concurrency, space.sweep.grace_epochs) == (4, 2, 1)
    assert plan.seeds == [0, 1] and plan.identity() == load_benchmark_plan(write(tmp_path, seeds=[5])).identity()


def test_retrains_row_re_runs_the_plans_recipe_not_the_one_of_the_base_its_space_reuses():
    """quick/retrain reuses quick.yaml's base (ref_epochs 5, ref_lr 1e-4); a plan that trains its references
    10 epochs at 1e-3 (judge_random) must re-run that recipe, or its "Retrain (re-run)" row is another model."""
    from mixunlearn.config import UnlearnConfig

    plan = load_benchmark_plan(benchmark_path("judge_random"))
    [retrain] = [m for m in plan.methods if m.name == "retrain"]
    cfg = UnlearnConfig.from_dict(retrain.space["base"])
    assert (cfg.ref_epochs, cfg.ref_lr) == (10, 1e-3)
    assert (cfg.hyper.epochs, cfg.hyper.lr, cfg.hyper.batch_size) == (cfg.ref_epochs, cfg.ref_lr, cfg.ref_batch_size)


@pytest.mark.parametrize("change, words", [
    ({"base": {**BASE, "lr": 0.1}}, ["base.lr", "not a common config field"]),
    ({"base": {**BASE, "method": "ga"}}, ["base.method", "method space"]),
    ({"base": {**BASE, "seed": 3}}, ["base.seed", "seeds:"]),
    ({"budget": {"trials": 0}}, ["budget.trials", "positive integer"]),
    ({"budget": {"epochs": 3}}, ["budget.epochs", "not a budget setting"]),
    ({"objective": "accuracy"}, ["objective 'accuracy'", "avg_gap"]),
    ({"methods": ["ga.yaml", "ga.yaml"]}, ["methods[1]", "already benchmarked"]),
    ({"methods": ["nowhere/ga"]}, ["methods[0]", "nowhere/ga"]),
    ({"methods": []}, ["methods must list"]),
    ({"seeds": [0, 0]}, ["seeds", "repeat"]),
    ({"budgte": {}}, ["unknown top-level key 'budgte'"]),
])
def test_an_impossible_plan_is_refused_naming_the_file_and_the_key(tmp_path, change, words):
    with pytest.raises(PlanError) as refused:
        load_benchmark_plan(write(tmp_path, **change))
    message = str(refused.value)
    assert str(tmp_path / "plan.yaml") in message
    for word in words:
        assert word in message


def test_du_is_refused_while_du_norm_is_not_reported_and_accepted_once_it_is(tmp_path):
    if "du_norm" in METRICS:
        assert load_benchmark_plan(write(tmp_path, objective="du")).metric == ("du_norm", "min")
    else:
        with pytest.raises(PlanError, match="du_norm"):
            load_benchmark_plan(write(tmp_path, objective="du"))


@pytest.mark.parametrize("name", ["quick", "paper", "full"])
def test_the_shipped_benchmark_plans_load_every_method(name):
    from mixunlearn.methods import METHODS

    assert name in list_benchmarks()
    plan = load_benchmark_plan(benchmark_path(name))
    assert [m.name for m in plan.methods] == list(METHODS)


def test_an_audit_and_the_oracle_objective_are_plan_keys(tmp_path):
    plan = load_benchmark_plan(write(tmp_path, audit={"models": 16}))
    assert plan.audit_models == 16 and plan.identity()["audit"] == {"models": 16}
    assert "audit" not in load_benchmark_plan(write(tmp_path)).identity()   # an old plan keeps its identity
    for bad in ({"models": 2}, {"n": 16}, 16):
        with pytest.raises(PlanError, match="audit must be"):
            load_benchmark_plan(write(tmp_path, audit=bad))
    with pytest.raises(PlanError, match="judge_models"):
        load_benchmark_plan(write(tmp_path, objective="oracle_nll"))
    judged = load_benchmark_plan(write(tmp_path, objective="oracle_nll", base={**BASE, "judge_models": 16}))
    assert judged.metric.metric == "oracle_nll" and judged.methods[0].space["objectives"][0]["metric"] == "oracle_nll"
