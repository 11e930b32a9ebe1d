"""An ablation plan file: its runs in file order, and each mistake refused with file and key."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mixunlearn.config import ConfigError
from search_spaces import METRICS, AblationRun, PlanError, load_plan

VALID = """
base: {dataset: fashion_mnist, model: cnn_small, epochs: 3, seed: 7}
seeds: [2, 0]
metrics: [test_r, asr, avg_gap]
variants:
  no_mix: {use_mix_loss: false}
  full: {}
  no_real: {omega: 0.0}
"""


def write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_runs_follow_the_file_order_variant_by_variant_then_seed(tmp_path):
    plan = load_plan(write(tmp_path, VALID))
    assert [(run.variant, run.seed) for run in plan.runs()] == [
        ("no_mix", 2), ("no_mix", 0), ("full", 2), ("full", 0), ("no_real", 2), ("no_real", 0)]
    assert all(isinstance(run, AblationRun) and run.config["seed"] == run.seed for run in plan.runs())
    assert plan.metrics == ["test_r", "asr", "avg_gap"]


def test_a_variant_differs_from_full_only_in_its_delta(tmp_path):
    plan = load_plan(write(tmp_path, VALID))
    full, no_real = plan.configs["full"], plan.configs["no_real"]
    assert full == plan.base
    assert {k for k in full if full[k] != no_real[k]} == {"omega"} and no_real["omega"] == 0.0
    runs = {(run.variant, run.seed): run.config for run in plan.runs()}
    assert {k for k in runs["full", 0] if runs["full", 0][k] != runs["no_real", 0][k]} == {"omega"}


def test_runs_do_not_share_mutable_values(tmp_path):
    first, second = load_plan(write(tmp_path, VALID)).runs()[:2]
    first.config["data_classes"].append(1)
    assert second.config["data_classes"] == [5, 6, 7, 8, 9]


def test_defaults_and_a_base_shared_with_a_sweep(tmp_path):
    write(tmp_path, "base: {dataset: mnist, epochs: 2}\nsearch: {alpha: {low: 0.1, high: 4.0}}\n", "space.yaml")
    (tmp_path / "ablations").mkdir()
    plan = load_plan(write(tmp_path, """
        base: ../space.yaml#base
        constants: {epochs: 1}
        variants: {full: , alpha_2: {alpha: 2.0}}
    """, "ablations/plan.yaml"))
    assert plan.seeds == [0] and plan.metrics == list(METRICS) and plan.curve_budget is None
    assert plan.base["dataset"] == "mnist" and plan.configs["alpha_2"]["epochs"] == 1


def test_a_curve_budget_is_a_plans_evaluation_schedule(tmp_path):
    plan = load_plan(write(tmp_path, VALID + "curve_budget: 0.05\n"))
    assert plan.curve_budget == 0.05 and len(plan.runs()) == 6


BAD_PLANS = {
    "unknown field in a delta": ("variants: {full: {}, no_real: {omgea: 0.0}}",
                                 ["variants.no_real", "'omgea'", "omega"]),
    "a delta the config refuses": ("variants: {no_real: {omega: -1.0}}", ["variants.no_real", "omega", ">= 0"]),
    "wrong type in a delta": ("variants: {k1: {gen_interval: one}}", ["variants.k1", "'gen_interval'", "int"]),
    "unknown field in base": ("base: {alpah: 1.0}\nvariants: {full: {}}", ["base", "'alpah'"]),
    "empty delta": ("variants: {full: {}, no_sharpen: {}}", ["variants.no_sharpen", "empty", "'full'"]),
    "empty delta written as nothing": ("variants:\n  full:\n  no_sharpen:\n", ["variants.no_sharpen", "empty"]),
    "a delta that changes nothing": ("variants: {full: {}, same: {alpha: 0.75}}",
                                     ["variants.same", "repeats the reference row"]),
    "two equal variants": ("variants: {a: {alpha: 2.0}, b: {alpha: 2}}", ["variants.b", "variants.a"]),
    "full with a delta": ("variants: {full: {alpha: 2.0}}", ["variants.full", "reference row", "{}"]),
    "no variants": ("seeds: [0]", ["variants", "at least one"]),
    "duplicate variant": ("variants:\n  full: {}\n  no_mix: {use_mix_loss: false}\n  no_mix: {omega: 0.0}\n",
                          ["line 4", "'no_mix'", "twice"]),
    "seed in a delta": ("variants: {s1: {seed: 1}}", ["variants.s1", "seed", "seeds"]),
    "bad variant name": ("variants: {'no real': {omega: 0.0}}", ["variants.no real", "letters"]),
    "unknown metric": ("metrics: [test_r, accuracy]\nvariants: {full: {}}", ["metrics", "'accuracy'", "avg_gap"]),
    "repeated metric": ("metrics: [asr, asr]\nvariants: {full: {}}", ["metrics", "repeat"]),
    "bad seeds": ("seeds: [0, one]\nvariants: {full: {}}", ["seeds", "integers"]),
    "repeated seeds": ("seeds: [0, 0]\nvariants: {full: {}}", ["seeds", "repeat"]),
    "unknown top-level key": ("variants: {full: {}}\nruns: 3", ["top-level key 'runs'", "variants"]),
    "negative curve budget": ("curve_budget: -0.1\nvariants: {full: {}}", ["curve_budget", "from 0 up", "-0.1"]),
    "curve budget as a flag": ("curve_budget: true\nvariants: {full: {}}", ["curve_budget", "True"]),
}


@pytest.mark.parametrize("mistake", BAD_PLANS)
def test_each_mistake_is_one_sentence_naming_the_file_and_key(tmp_path, mistake):
    text, expected = BAD_PLANS[mistake]
    path = write(tmp_path, text)
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    for fragment in expected:
        assert fragment in message, (fragment, message)
    assert "\n" not in message


def test_a_plan_error_is_a_config_error():
    assert issubclass(PlanError, ConfigError)
