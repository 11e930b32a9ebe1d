"""Every YAML shipped in search_spaces/ loads, samples inside its space and yields valid configs."""
from __future__ import annotations

import doctest
import importlib

import optuna
import pytest

import search_spaces
from mixunlearn.config import UnlearnConfig
from search_spaces import (CategoricalParam, FloatParam, IntParam, list_plans, list_presets, load_plan,
                           load_space, plan_path, preset_path)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_presets_and_plans_the_docs_name_are_shipped():
    assert {"quick", "paper", "paper_pareto"} <= set(list_presets())
    assert {"mixunlearn_components", "alpha_oat"} <= set(list_plans())


def inside(param, value) -> bool:
    if isinstance(param, CategoricalParam):
        return value in param.choices
    if isinstance(param, IntParam):
        return isinstance(value, int) and param.low <= value <= param.high and (value - param.low) % param.step == 0
    assert isinstance(param, FloatParam)
    return isinstance(value, float) and param.low <= value <= param.high


@pytest.mark.parametrize("name", list_presets())
def test_define_by_run_samples_inside_the_space_and_every_trial_config_is_valid(name):
    space = load_space(preset_path(name))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(200):
        trial = study.ask()
        constants = space.define_by_run(trial)
        assert set(trial.params) == set(space.search)
        assert not set(constants) & set(space.search), "constants would overwrite the sampled values"
        for field, value in trial.params.items():
            assert inside(space.search[field], value), (field, value)
        config = {**trial.params, **constants}   # Ray's merge: suggestions, then the returned constants
        assert set(config) == set(UnlearnConfig.field_names())
        assert space.config_for(config) == UnlearnConfig.from_dict(config).to_dict()
        study.tell(trial, 0.0)


@pytest.mark.parametrize("name", list_presets())
def test_paper_defaults_lie_in_the_space_and_are_the_first_trial(name):
    space = load_space(preset_path(name))
    point = space.paper_defaults()
    assert point and all(inside(space.search[field], value) for field, value in point.items())
    study = optuna.create_study()
    for enqueued in space.points_to_evaluate():
        study.enqueue_trial(enqueued)   # what OptunaSearch does with points_to_evaluate
    trial = study.ask()
    space.define_by_run(trial)
    assert trial.params == point


def test_quick_is_the_cpu_demo():
    space = load_space(preset_path("quick"))
    assert (space.base["dataset"], space.base["model"], space.base["task"]) == ("fashion_mnist", "cnn_small", "class")
    assert space.base["targets"] == "agnostic" and 0 < space.base["train_subset"] <= 300
    assert space.sweep.trials == 8
    assert space.paper_defaults()["alpha"] == 0.75 and space.paper_defaults()["gen_interval"] == 4


def test_paper_pareto_shares_the_paper_base_and_has_two_objectives():
    pareto, paper = load_space(preset_path("paper_pareto")), load_space(preset_path("paper"))
    assert pareto.base == paper.base
    assert [o.mode for o in pareto.objectives] == ["min", "max"]


@pytest.mark.parametrize("name", list_plans())
def test_every_plan_loads_and_its_runs_validate(name):
    plan = load_plan(plan_path(name))
    runs = plan.runs()
    assert len(runs) == len(plan.variants) * len(plan.seeds)
    for run in runs:
        assert UnlearnConfig.from_dict(run.config).to_dict() == run.config
        assert run.config["seed"] == run.seed


def test_the_component_plan_lists_the_papers_table_3():
    plan = load_plan(plan_path("mixunlearn_components"))
    assert list(plan.variants)[:5] == ["full", "no_real", "no_mix", "no_mixblock", "no_sharpen"]
    assert len(plan.variants) == 13 and plan.seeds == [0, 1, 2]


def test_the_mixblock_plan_varies_the_generators_form_one_choice_at_a_time():
    plan = load_plan(plan_path("mixblock_forms"))
    assert {"full", "lambda_pair", "one_way", "mask_lambda", "gen_interval_2", "no_mixblock"} <= set(plan.variants)
    # The release's remaining generator choices (issue 19), each one row.
    changed = {name: {k for k in config if config[k] != plan.base[k]} for name, config in plan.configs.items()}
    assert changed["gen_sgd"] == {"gen_optimizer", "lr_generator"} and plan.configs["gen_sgd"]["lr_generator"] == 0.1
    assert changed["bilinear"] == {"mixblock_upsample"} and changed["no_lambda_concat"] == {"lambda_concat"}
    assert plan.base["lambda_draw"] == "batch" and plan.base["mixblock_form"] == "two_way"
    assert {"mask_forget_share", "mask_spatial_std"} <= set(plan.metrics) and plan.seeds == [0, 1, 2]


@pytest.mark.parametrize("name", ["mixunlearn_components", "mixblock_forms"])
def test_the_full_tracks_plans_are_the_quick_plans_on_the_full_base(name):
    quick, full = load_plan(plan_path(name)), load_plan(plan_path(f"{name}_full"))
    assert full.base == load_space(preset_path("full")).base and full.base["train_subset"] == 0
    assert set(full.variants) == set(quick.variants) and full.variants == {k: quick.variants[k] for k in full.variants}
    assert len(full.seeds) >= 3 and {"mask_forget_share", "mask_spatial_std", "mask_lambda_corr"} <= set(full.metrics)


def test_the_alpha_plan_varies_only_alpha():
    plan = load_plan(plan_path("alpha_oat"))
    alphas = [config["alpha"] for config in plan.configs.values()]
    assert alphas == sorted(alphas) and 0.75 in alphas
    for config in plan.configs.values():
        assert {k for k in config if config[k] != plan.base[k]} <= {"alpha"}


@pytest.mark.parametrize("module", ["search_spaces", "search_spaces._space", "search_spaces._plan",
                                    "search_spaces._presets", "search_spaces._params"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_unknown_preset_names_the_shipped_ones():
    with pytest.raises(search_spaces.SpaceError, match="quick"):
        preset_path("quik")
    with pytest.raises(search_spaces.PlanError, match="alpha_oat"):
        plan_path("alpha")
