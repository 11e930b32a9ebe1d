"""A sweep space: the YAML a user edits to say what Optuna searches, and its define-by-run function.

    # search_spaces/quick.yaml
    base: {dataset: fashion_mnist, model: cnn_small, epochs: 5}   # or base: best.yaml / other.yaml#base
    constants: {train_subset: 250}                                # optional: overrides base fields
    search:                                                       # see _params.py for the spellings
      alpha: {low: 0.1, high: 4.0, log: true}
      gen_interval: {choices: [1, 2, 4, 8]}
    objectives: [{metric: avg_gap, mode: min}]                    # two or more: a Pareto search
    sweep: {trials: 8, concurrency: 2, grace_epochs: 1}           # defaults of the CLI's flags (+ curve_budget)
    seed_defaults: true                                           # evaluate the base's values first

Every key but `search` is optional. `search: {}` is a fixed config (Retrain's spaces, the yardstick): each
trial runs the base as it is. Everything is checked when the file is loaded, so a typo fails in
the first second of a sweep, not in trial 37.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import optuna

from ._base import resolve_base, validated
from ._errors import SpaceError
from ._metrics import METRICS, MODES
from ._params import Param, parse_param
from ._yaml import load_yaml

_TOP_LEVEL = ("base", "constants", "search", "objectives", "sweep", "seed_defaults")


class Objective(NamedTuple):
    """One reported metric a sweep optimises, and whether lower ("min") or higher ("max") is better."""
    metric: str
    mode: str


@dataclass(frozen=True)
class SweepDefaults:
    """What the CLI uses when its flag is not given."""
    trials: int = 8            # Optuna trials in total, the paper defaults included
    concurrency: int = 1       # trials running at once
    grace_epochs: int = 1      # ASHA: epochs every trial gets before it may be stopped early
    # ASHA's rungs and a trial's last epoch always get the whole evaluation; the epochs between them get
    # their accuracies (the curves' points) only while those passes take at most this share of the
    # trial's training time (mixunlearn.run.CurveBudget). 0 = none; a large value (10) = every epoch.
    curve_budget: float = 0.05


@dataclass(frozen=True)
class SweepSpace:
    """A loaded, validated sweep space. Build it with `load_space`."""
    path: Path
    base: dict[str, Any]                 # the full flat config every trial starts from (constants applied)
    search: dict[str, Param]             # field name -> the values Optuna may give it, in file order
    objectives: list[Objective] = field(default_factory=lambda: [Objective("avg_gap", "min")])
    sweep: SweepDefaults = field(default_factory=SweepDefaults)
    seed_defaults: bool = True

    @property
    def constants(self) -> dict[str, Any]:
        """The base fields no trial changes."""
        return {k: copy.deepcopy(v) for k, v in self.base.items() if k not in self.search}

    def define_by_run(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest every searched field on `trial` and return the constants.

        This is the define-by-run function `ray.tune.search.optuna.OptunaSearch(space=...)` takes: Ray
        records each `trial.suggest_*` value and merges the returned dict over them, so a trial's Tune
        config is the full flat config. The constants exclude the searched fields, which they would
        otherwise overwrite.

        >>> import optuna
        >>> from search_spaces import load_space, preset_path
        >>> space = load_space(preset_path("quick"))
        >>> trial = optuna.create_study().ask()
        >>> constants = space.define_by_run(trial)
        >>> sorted(trial.params) == sorted(space.search)
        True
        >>> config = space.config_for({**constants, **trial.params})   # what a trial runs
        """
        for name, param in self.search.items():
            param.suggest(trial, name)
        return self.constants

    def config_for(self, params: dict[str, Any]) -> dict[str, Any]:
        """The full validated flat config of a trial: `base` with `params` (any config fields) over it.

        >>> from search_spaces import load_space, preset_path
        >>> space = load_space(preset_path("quick"))
        >>> space.config_for({"alpha": 2.0})["alpha"], space.config_for({})["dataset"]
        (2.0, 'fashion_mnist')
        """
        return validated({**self.base, **params}, source=f"{self.path}: trial params", error=SpaceError)

    def paper_defaults(self) -> dict[str, Any]:
        """The base's values of the searched fields (METHOD.md's defaults in the shipped presets).

        A value outside its range is clipped to the nearest end (and onto an int range's step); a
        categorical field whose base value is not a choice is left out, so Optuna samples it.

        >>> from search_spaces import load_space, preset_path
        >>> load_space(preset_path("quick")).paper_defaults()["alpha"]
        0.75
        """
        point = {name: param.nearest(self.base[name]) for name, param in self.search.items()}
        return {name: value for name, value in point.items() if value is not None}

    def points_to_evaluate(self) -> list[dict[str, Any]]:
        """`[paper_defaults()]` when `seed_defaults` is true and something is searched, else `[]`:
        OptunaSearch's points_to_evaluate (a fixed config has no point to seed)."""
        return [self.paper_defaults()] if self.seed_defaults and self.search else []


def load_space(path: str | Path) -> SweepSpace:
    """Read and validate the sweep space at `path`; a problem raises `SpaceError` naming file and key.

    >>> from search_spaces import load_space, preset_path
    >>> space = load_space(preset_path("quick"))
    >>> space.objectives
    [Objective(metric='avg_gap', mode='min')]
    >>> space.search["gen_interval"]
    CategoricalParam(choices=(1, 2, 4, 8))
    """
    path = Path(path)
    document = load_yaml(path, error=SpaceError)
    unknown = [key for key in document if key not in _TOP_LEVEL]
    if unknown:
        raise SpaceError(f"{path}: unknown top-level key {unknown[0]!r}; allowed: {', '.join(_TOP_LEVEL)}")
    base = resolve_base(document, path=path, error=SpaceError)
    search = document.get("search")
    if not isinstance(search, dict):
        raise SpaceError(f"{path}: search must map at least one config field to its values, "
                         "e.g. search: {alpha: {low: 0.1, high: 4.0, log: true}}, or be {} for a fixed "
                         f"config (found {search!r})")
    constants = document.get("constants") or {}
    for name in search:
        if name in constants:
            raise SpaceError(f"{path}: constants.{name} is also searched; keep it in one of search or constants")
    objectives = _objectives(document.get("objectives"), path)
    if any(o.metric == "oracle_nll" for o in objectives) and "judge_models" not in search and \
            int({**base, **constants}.get("judge_models", 0)) < 3:
        raise SpaceError(f"{path}: the objective oracle_nll reads a pool of oracles; set judge_models: 16 (at least 3) "
                         "in base or constants")
    return SweepSpace(
        path=path,
        base=base,
        search={name: parse_param(name, spec, base=base, path=str(path)) for name, spec in search.items()},
        objectives=objectives,
        sweep=_sweep(document.get("sweep"), path),
        seed_defaults=_seed_defaults(document.get("seed_defaults", True), path),
    )


def _objectives(value: Any, path: Path) -> list[Objective]:
    if value is None:
        return [Objective("avg_gap", "min")]
    if not isinstance(value, list) or not value:
        raise SpaceError(f"{path}: objectives must be a list of {{metric, mode}}, "
                         f"e.g. [{{metric: avg_gap, mode: min}}] (found {value!r})")
    objectives = []
    for i, item in enumerate(value):
        key = f"{path}: objectives[{i}]"
        if not isinstance(item, dict) or set(item) != {"metric", "mode"}:
            raise SpaceError(f"{key} must be a mapping with exactly metric and mode, "
                             f"e.g. {{metric: avg_gap, mode: min}} (found {item!r})")
        if item["metric"] not in METRICS:
            raise SpaceError(f"{key}: metric {item['metric']!r} is not reported; use one of {', '.join(METRICS)}")
        if item["mode"] not in MODES:
            raise SpaceError(f"{key}: mode {item['mode']!r} is not allowed; use min or max")
        if any(o.metric == item["metric"] for o in objectives):
            raise SpaceError(f"{key}: metric {item['metric']!r} is already an objective; list it once")
        objectives.append(Objective(item["metric"], item["mode"]))
    return objectives


def _sweep(value: Any, path: Path) -> SweepDefaults:
    return sweep_defaults(value, path, key="sweep", error=SpaceError)


def sweep_defaults(value: Any, path: Path, *, key: str, error: type[Exception]) -> SweepDefaults:
    """A `sweep:` mapping (a benchmark plan's `budget:`) as SweepDefaults: positive integers, and
    curve_budget a number from 0 up."""
    if value is None:
        return SweepDefaults()
    allowed = tuple(SweepDefaults.__dataclass_fields__)
    if not isinstance(value, dict):
        raise error(f"{path}: {key} must be a mapping with keys among {', '.join(allowed)}, e.g. "
                    f"{{trials: 8, concurrency: 2, grace_epochs: 1}} (found {value!r})")
    for name, number in value.items():
        if name not in allowed:
            raise error(f"{path}: {key}.{name} is not a {key} setting; allowed: {', '.join(allowed)}")
        if name == "curve_budget":
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 <= number < float("inf"):
                raise error(f"{path}: {key}.curve_budget must be a share of the training time from 0 up "
                            f"(0.05 = 5%), found {number!r}")
        elif isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise error(f"{path}: {key}.{name} must be a positive integer, found {number!r}")
    return SweepDefaults(**value)


def _seed_defaults(value: Any, path: Path) -> bool:
    if not isinstance(value, bool):
        raise SpaceError(f"{path}: seed_defaults must be true or false, found {value!r}")
    return value

