"""Search spaces and ablation plans: the YAML files that say what a sweep or an ablation varies.

A sweep space (search_spaces/*.yaml, and each method's methods/<method>/{quick,paper}.yaml, named
`quick/ga` and so on) gives a base config, the fields Optuna searches and the objectives;
`SweepSpace.define_by_run` is the function Ray's OptunaSearch calls per trial. An ablation
plan (search_spaces/ablations/*.yaml) gives a base config and named deltas from it, run over seeds. A
benchmark plan (search_spaces/benchmarks/*.yaml) names method spaces, one budget and seeds.
All are validated in full on load: a bad file raises `SpaceError` / `PlanError` (both `ConfigError`)
in one sentence that names the file and the key.

    >>> import optuna
    >>> from search_spaces import load_space, load_plan, preset_path, plan_path
    >>> space = load_space(preset_path("quick"))
    >>> trial = optuna.create_study().ask()
    >>> config = space.config_for({**space.define_by_run(trial), **trial.params})
    >>> config["dataset"], 0.1 <= config["alpha"] <= 4.0
    ('fashion_mnist', True)
    >>> len(load_plan(plan_path("mixunlearn_components")).runs())
    39

Ray wiring (in mixsweep/): `OptunaSearch(space=space.define_by_run, metric=[o.metric for o in
space.objectives], mode=[o.mode for o in space.objectives], points_to_evaluate=space.points_to_evaluate())`
with an empty Tuner param_space (a str/list instead of one-element lists for a single objective).
"""
from __future__ import annotations

import importlib
from typing import Any

# Public name -> the private module that defines it, imported on first use (PEP 562): `mixsweep` resolves a
# preset's path (_presets) to refuse a bad one before Optuna (_params, _space) or the methods are imported.
_EXPORTS = {
    "OBJECTIVES": "_benchmark_plan", "BenchmarkMethod": "_benchmark_plan", "BenchmarkPlan": "_benchmark_plan",
    "load_benchmark_plan": "_benchmark_plan",
    "PlanError": "_errors", "SpaceError": "_errors",
    "METRICS": "_metrics", "MODES": "_metrics",
    "CategoricalParam": "_params", "FloatParam": "_params", "IntParam": "_params", "Param": "_params",
    "searchable": "_params",
    "AblationPlan": "_plan", "AblationRun": "_plan", "load_plan": "_plan",
    "benchmark_path": "_presets", "is_preset": "_presets", "list_benchmarks": "_presets",
    "list_method_spaces": "_presets", "list_plans": "_presets", "list_presets": "_presets",
    "method_space_path": "_presets", "plan_path": "_presets", "preset_path": "_presets", "shipped_name": "_presets",
    "Objective": "_space", "SweepDefaults": "_space", "SweepSpace": "_space", "load_space": "_space",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'search_spaces' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
