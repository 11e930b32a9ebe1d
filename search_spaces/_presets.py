"""The YAML files shipped in this package: sweep presets beside this file, ablation plans in ablations/,
benchmark plans in benchmarks/."""
from __future__ import annotations

from pathlib import Path

from ._errors import PlanError, SpaceError

_PRESETS = Path(__file__).resolve().parent
_PLANS = _PRESETS / "ablations"
_BENCHMARKS = _PRESETS / "benchmarks"


def list_presets() -> list[str]:
    """Names of the shipped sweep spaces, e.g. ['paper', 'paper_pareto', 'quick']."""
    return sorted(p.stem for p in _PRESETS.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The file of the shipped sweep space `name` ("quick" or "quick.yaml").

    >>> from search_spaces import preset_path
    >>> preset_path("quick").name
    'quick.yaml'
    """
    stem = name.removesuffix(".yaml")
    if stem not in list_presets():
        raise SpaceError(f"sweep preset {name!r} does not exist; shipped presets: {', '.join(list_presets())}")
    return _PRESETS / f"{stem}.yaml"


def list_plans() -> list[str]:
    """Names of the shipped ablation plans, e.g. ['alpha_oat', 'mixunlearn_components']."""
    return sorted(p.stem for p in _PLANS.glob("*.yaml"))


def plan_path(name: str) -> Path:
    """The file of the shipped ablation plan `name` ("alpha_oat" or "alpha_oat.yaml")."""
    stem = name.removesuffix(".yaml")
    if stem not in list_plans():
        raise PlanError(f"ablation plan {name!r} does not exist; shipped plans: {', '.join(list_plans())}")
    return _PLANS / f"{stem}.yaml"


def list_benchmarks() -> list[str]:
    """Names of the shipped benchmark plans, e.g. ['paper', 'quick']."""
    return sorted(p.stem for p in _BENCHMARKS.glob("*.yaml"))


def benchmark_path(name: str) -> Path:
    """The file of the shipped benchmark plan `name` ("quick" or "quick.yaml")."""
    stem = name.removesuffix(".yaml")
    if stem not in list_benchmarks():
        raise PlanError(f"benchmark plan {name!r} does not exist; shipped plans: {', '.join(list_benchmarks())}")
    return _BENCHMARKS / f"{stem}.yaml"
