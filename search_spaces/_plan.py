"""An ablation plan: a base config, named variants that each change a few fields, and the seeds to repeat.

    # search_spaces/ablations/mixunlearn_components.yaml
    base: ../quick.yaml#base          # or a mapping of fields, or an exported best config
    constants: {epochs: 5}            # optional: overrides base fields for every variant
    seeds: [0, 1, 2]                  # each variant runs once per seed (the `seed` field)
    metrics: [test_r, test_f, asr, avg_gap]   # the columns of the ablation table
    curve_budget: 0.05                # optional: the whole evaluation at the last epoch only (below)
    variants:                         # rows, in this order; each a delta from base
      full: {}                        # the reference row: the one variant allowed no change
      no_real: {omega: 0.0}
      no_mix: {use_mix_loss: false}

`seeds` sets only `seed`, the unlearning loop's; the forget split and the reference models follow
`ref_seed`, so every run of a plan is measured against the same f_D and Retrain.

Without `curve_budget` every epoch of every run gets the whole evaluation (accuracies and attackers). With
it, as a sweep's `sweep.curve_budget`: the attackers run at the last epoch only (the table reads no other)
and the epochs before get their accuracies only within that share of the training time; the losses and
mask diagnostics are logged every epoch either way. On the full track an epoch's evaluation costs about as
much as its training (benchmarks/results/full_track-cpu.json).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ._base import resolve_base, validated
from ._errors import PlanError
from ._metrics import METRICS
from ._yaml import load_yaml

_TOP_LEVEL = ("base", "constants", "seeds", "metrics", "curve_budget", "variants")
REFERENCE = "full"  # the row every other variant is read against; its delta must be empty
# Variant names become run names, MLflow tags and table rows: keep them plain.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class AblationRun(NamedTuple):
    """One run of a plan: the variant's name, its seed and the full flat config it trains with."""
    variant: str
    seed: int
    config: dict[str, Any]


@dataclass(frozen=True)
class AblationPlan:
    """A loaded, validated ablation plan. Build it with `load_plan`."""
    path: Path
    base: dict[str, Any]                   # the full flat config (constants applied)
    variants: dict[str, dict[str, Any]]    # name -> delta from base, in file order
    seeds: list[int]
    metrics: list[str]
    configs: dict[str, dict[str, Any]]     # name -> base with the delta applied, validated
    curve_budget: float | None = None      # None: every epoch evaluated whole; else the last only (module doc)

    def runs(self) -> list[AblationRun]:
        """Every (variant, seed, config) in plan order: variants as listed, each over all seeds.

        >>> from search_spaces import load_plan, plan_path
        >>> plan = load_plan(plan_path("mixunlearn_components"))
        >>> [(run.variant, run.seed) for run in plan.runs()[:4]]
        [('full', 0), ('full', 1), ('full', 2), ('no_real', 0)]
        """
        return [AblationRun(name, seed, {**copy.deepcopy(config), "seed": seed})
                for name, config in self.configs.items() for seed in self.seeds]


def load_plan(path: str | Path) -> AblationPlan:
    """Read and validate the ablation plan at `path`; a problem raises `PlanError` naming file and key.

    >>> from search_spaces import load_plan, plan_path
    >>> plan = load_plan(plan_path("mixunlearn_components"))
    >>> plan.variants["no_real"]
    {'omega': 0.0}
    """
    path = Path(path)
    document = load_yaml(path, error=PlanError)
    unknown = [key for key in document if key not in _TOP_LEVEL]
    if unknown:
        raise PlanError(f"{path}: unknown top-level key {unknown[0]!r}; allowed: {', '.join(_TOP_LEVEL)}")
    base = resolve_base(document, path=path, error=PlanError)
    variants = _variants(document.get("variants"), path)
    configs: dict[str, dict[str, Any]] = {}
    for name, delta in variants.items():
        key = f"{path}: variants.{name}"
        config = validated({**base, **delta}, source=key, error=PlanError)
        if name != REFERENCE and config == base:
            raise PlanError(f"{key} sets every field to its base value, so it repeats the reference row; "
                            "change a field or remove the variant")
        twin = next((other for other, seen in configs.items() if seen == config), None)
        if twin is not None:
            raise PlanError(f"{key} gives the same config as variants.{twin}; keep one of them")
        configs[name] = config
    return AblationPlan(
        path=path,
        base=base,
        variants=variants,
        seeds=_seeds(document.get("seeds", [0]), path),
        metrics=_metrics(document.get("metrics", list(METRICS)), path),
        configs=configs,
        curve_budget=_curve_budget(document.get("curve_budget"), path),
    )


def _curve_budget(value: Any, path: Path) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise PlanError(f"{path}: curve_budget must be a share of the training time from 0 up (0.05 = 5%), "
                        f"found {value!r}; leave it out to evaluate every epoch whole")
    return float(value)


def _variants(value: Any, path: Path) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not value:
        raise PlanError(f"{path}: variants must map at least one variant name to its delta from base, "
                        "e.g. variants: {full: {}, no_real: {omega: 0.0}}")
    variants = {}
    for name, delta in value.items():
        key = f"{path}: variants.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise PlanError(f"{key}: a variant name must be letters, digits, '_', '.' or '-' "
                            "(it becomes a run name)")
        delta = {} if delta is None else delta
        if not isinstance(delta, dict):
            raise PlanError(f"{key} must be a mapping of the fields it changes, e.g. {{omega: 0.0}} "
                            f"(found {delta!r})")
        if name == REFERENCE and delta:
            raise PlanError(f"{key} is the reference row and must be {{}}; "
                            "change the base, or give this variant another name")
        if name != REFERENCE and not delta:
            raise PlanError(f"{key} is empty; give the fields it changes (only '{REFERENCE}' may be empty)")
        if "seed" in delta:
            raise PlanError(f"{key} sets seed, which `seeds:` controls for every variant; "
                            "list the seeds under seeds")
        variants[name] = delta
    return variants


def _seeds(value: Any, path: Path) -> list[int]:
    if (not isinstance(value, list) or not value
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in value)):
        raise PlanError(f"{path}: seeds must be a non-empty list of non-negative integers, e.g. [0, 1, 2] "
                        f"(found {value!r})")
    if len(set(value)) < len(value):
        raise PlanError(f"{path}: seeds {value!r} repeat a seed; list each once")
    return list(value)


def _metrics(value: Any, path: Path) -> list[str]:
    if not isinstance(value, list) or not value:
        raise PlanError(f"{path}: metrics must be a non-empty list of metric names, e.g. [test_r, asr, avg_gap]")
    for name in value:
        if name not in METRICS:
            raise PlanError(f"{path}: metrics: {name!r} is not a reported metric; use any of {', '.join(METRICS)}")
    if len(set(value)) < len(value):
        raise PlanError(f"{path}: metrics {value!r} repeat a name; list each once")
    return list(value)
