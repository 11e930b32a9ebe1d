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
from ._benchmark_plan import OBJECTIVES, BenchmarkMethod, BenchmarkPlan, load_benchmark_plan
from ._errors import PlanError, SpaceError
from ._metrics import METRICS, MODES
from ._params import SEARCHABLE, CategoricalParam, FloatParam, IntParam, Param, searchable
from ._plan import AblationPlan, AblationRun, load_plan
from ._presets import (benchmark_path, is_preset, list_benchmarks, list_method_spaces, list_plans, list_presets,
                       method_space_path, plan_path, preset_path, shipped_name)
from ._space import Objective, SweepDefaults, SweepSpace, load_space

__all__ = [
    "AblationPlan", "AblationRun", "BenchmarkMethod", "BenchmarkPlan", "CategoricalParam", "FloatParam",
    "IntParam", "METRICS", "MODES", "OBJECTIVES", "Objective", "Param", "PlanError", "SEARCHABLE", "SpaceError",
    "SweepDefaults", "SweepSpace", "benchmark_path", "is_preset", "list_benchmarks", "list_method_spaces",
    "list_plans", "list_presets", "load_benchmark_plan", "load_plan", "load_space", "method_space_path",
    "plan_path", "preset_path", "searchable", "shipped_name",
]
