"""One searched parameter of a sweep: its YAML spelling, its checks, and its Optuna `suggest_*` call.

    alpha:        {low: 0.1, high: 4.0, log: true}   # FloatParam: a float field, uniform or log-uniform
    epochs:       {low: 1, high: 40}                  # IntParam: an int field (optional log, step)
    gen_interval: {choices: [1, 2, 4, 8]}             # CategoricalParam: any searchable field
    gen_target:   {choices: [current, ema]}           # string and bool fields take choices only

The fields a space may search are those of its base's `method` (`searchable(method)`): its Hyper's fields
(MixUnlearn's `alpha`, `omega`, ...; a baseline's `lr`, `weight_decay`, `tau`, ...) but those its Hyper
marks `fixed`, and `targets`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import optuna

from mixunlearn.config import UnlearnConfig, method_class

from ._base import validated
from ._errors import SpaceError

# Only fields read by the unlearning loop may vary between trials: `targets` and the method's own fields.
# The data, forget task, reference recipe and ref_seed define f_D and Retrain, which every trial of a sweep
# shares and is measured against (avg_gap is a distance to Retrain); evaluation sizes and `seed` would
# change the yardstick. A method's Hyper may mark fields `fixed`: they say which reading of the method runs
# (MixUnlearn's generator form, METHOD.md's open questions): ablation plans compare them, a sweep keeps one.
SEARCHABLE_COMMON: tuple[str, ...] = ("targets",)


def searchable(method: str) -> tuple[str, ...]:
    """The fields a sweep of `method` may search: `targets` and the method's own but its Hyper's `fixed`.

    >>> searchable("ga")
    ('targets', 'epochs', 'batch_size', 'lr', 'momentum', 'weight_decay')
    """
    cls = method_class(method, "search")
    fixed = getattr(cls.Hyper, "fixed", ())
    return (*SEARCHABLE_COMMON, *(f for f in cls.config_fields() if f not in fixed))


@dataclass(frozen=True)
class FloatParam:
    """A float drawn from [low, high], log-uniformly when `log` (then low > 0)."""
    low: float
    high: float
    log: bool = False

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def nearest(self, value: Any) -> float:
        return min(max(float(value), self.low), self.high)


@dataclass(frozen=True)
class IntParam:
    """An integer drawn from low, low + step, ..., high; log-uniformly when `log` (then step is 1)."""
    low: int
    high: int
    log: bool = False
    step: int = 1

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def nearest(self, value: Any) -> int:
        clipped = min(max(int(value), self.low), self.high)
        return self.low + round((clipped - self.low) / self.step) * self.step


@dataclass(frozen=True)
class CategoricalParam:
    """One of `choices` (numbers, strings or booleans, all of the field's type)."""
    choices: tuple[Any, ...]

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, self.choices)

    def nearest(self, value: Any) -> Any | None:
        """`value` if it is a choice, else None: there is no nearest category."""
        return value if value in self.choices else None


Param = Union[FloatParam, IntParam, CategoricalParam]


def parse_param(name: str, spec: Any, *, base: dict[str, Any], path: str) -> Param:
    """The parameter `search.<name>: spec` of the file `path`; every value it allows is checked
    against UnlearnConfig on top of `base`, so no trial can draw an impossible config."""
    key = f"{path}: search.{name}"
    method = method_class(base["method"], key)
    allowed = searchable(base["method"])
    fields = {*UnlearnConfig.common_fields(), *method.config_fields()}
    types = {f: t for f, t in {**UnlearnConfig.field_types(), **method.field_types()}.items() if f in fields}
    if name not in types:
        raise SpaceError(f"{key} is not a config field of method {base['method']!r}; searchable fields: "
                         f"{', '.join(allowed)}")
    if name not in allowed:
        raise SpaceError(f"{key} cannot be searched because every trial shares the data, forget task, "
                         f"reference models and evaluation; set it under base, or search one of: "
                         f"{', '.join(allowed)}")
    kind = types[name]
    if not isinstance(spec, dict):
        raise SpaceError(f"{key} must be a mapping such as {_example(kind)} (found {spec!r})")
    param = _categorical(spec, kind, key) if "choices" in spec else _range(spec, kind, key)
    for value in _extremes(param):
        validated({**base, name: value}, source=key, error=SpaceError)
    return param


def _categorical(spec: dict[str, Any], kind: type, key: str) -> CategoricalParam:
    _allow_keys(spec, ("choices",), key, kind)
    choices = spec["choices"]
    if not isinstance(choices, list) or len(choices) < 2:
        raise SpaceError(f"{key}: choices must be a list of at least two values "
                         f"(a single value belongs under base or constants), found {choices!r}")
    typed = [_typed(value, kind, key, "choices") for value in choices]
    if len(set(typed)) < len(typed):
        raise SpaceError(f"{key}: choices {choices!r} repeat a value; list each once")
    return CategoricalParam(tuple(typed))


def _range(spec: dict[str, Any], kind: type, key: str) -> FloatParam | IntParam:
    if kind not in (int, float):
        raise SpaceError(f"{key} is a {kind.__name__} field, so it takes {_example(kind)}, not a range")
    _allow_keys(spec, ("low", "high", "log", "step") if kind is int else ("low", "high", "log"), key, kind)
    for bound in ("low", "high"):
        if bound not in spec:
            raise SpaceError(f"{key} needs both low and high (missing {bound}), as in {_example(kind)}")
    low, high = _typed(spec["low"], kind, key, "low"), _typed(spec["high"], kind, key, "high")
    log, step = spec.get("log", False), spec.get("step", 1)
    if not isinstance(log, bool):
        raise SpaceError(f"{key}: log must be true or false, found {log!r}")
    if low == high:
        raise SpaceError(f"{key} is an empty range (low = high = {low}); widen it, "
                         "or fix the value under base or constants")
    if low > high:
        raise SpaceError(f"{key} is reversed (low {low} > high {high}); swap low and high")
    if log and low <= 0:
        raise SpaceError(f"{key}: log: true needs low > 0, found low = {low}; raise low or drop log")
    if kind is float:
        return FloatParam(low, high, log)
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise SpaceError(f"{key}: step must be a positive integer, found {step!r}")
    if log and step != 1:
        raise SpaceError(f"{key}: log: true works with step 1 only (Optuna's rule), found step {step}")
    if (high - low) % step:
        raise SpaceError(f"{key}: high - low = {high - low} is not a multiple of step {step}; "
                         f"end the range on a step")
    return IntParam(low, high, log, step)


def _typed(value: Any, kind: type, key: str, what: str) -> Any:
    """`value` as a `kind` (an int is a fine float), or a refusal naming what was found."""
    fits = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(kind, False)
    if not fits:
        raise SpaceError(f"{key}: {what} {value!r} is a {type(value).__name__}, but the field is "
                         f"{kind.__name__}; write {_example(kind)}")
    return float(value) if kind is float else value


def _allow_keys(spec: dict[str, Any], allowed: tuple[str, ...], key: str, kind: type) -> None:
    unknown = [k for k in spec if k not in allowed]
    if unknown:
        raise SpaceError(f"{key}: unknown key {unknown[0]!r} here; allowed: {', '.join(allowed)}, "
                         f"as in {_example(kind)}")


def _extremes(param: Param) -> tuple[Any, ...]:
    if isinstance(param, CategoricalParam):
        return param.choices
    return (param.low, param.high)


def _example(kind: type) -> str:
    return {
        float: "{low: 0.1, high: 4.0, log: true}",
        int: "{low: 1, high: 8} or {choices: [1, 2, 4, 8]}",
        bool: "{choices: [true, false]}",
        str: "{choices: [current, ema]}",
    }.get(kind, "{choices: [...]}")
