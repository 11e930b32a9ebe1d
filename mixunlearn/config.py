"""The one flat, typed config of an unlearning run: the common fields plus those of its method.

The same dict is the Optuna trial's parameters, the Tune trial's `config`, the MLflow run's params,
the exported best-config YAML and the input of `mixsweep train CONFIG.yaml`: one spelling per field.

    cfg = UnlearnConfig(dataset="fashion_mnist", task="class", forget_class=0, alpha=1.5)  # MixUnlearn's alpha
    cfg = UnlearnConfig(method="ga", lr=0.01)                           # a baseline and its own fields
    cfg = UnlearnConfig.from_dict(yaml.safe_load(open("best.yaml")))   # strings coerced, unknown keys refused
    cfg.to_dict()                                                       # plain JSON/YAML types only
    cfg.hyper                                                           # the method's Hyper: MixUnlearnHyper, GAHyper, ...

The common fields (data, task, models, label access, run) are mixunlearn/fields.py's CommonFields; every
method, MixUnlearn included, has its own fields as a `Hyper` dataclass in its own file
(mixunlearn/methods/<name>.py), set by their plain names (`alpha`, `lr`, `epochs`, ...) and readable as
`cfg.hyper.<name>` or `cfg.<name>`. A field of another method is refused, naming the method and its
fields, and `to_dict()` holds only the common fields and the method's own: that is what a run logs to
MLflow and what an export writes.

Layers (an import only points down): fields.py <- the methods <- this module. Looking a method up imports
the methods (and torch, ~2 s) on first use, not with this module: `mixsweep` imports it to answer --help
and to refuse a bad file before any heavy import (mixsweep/cli.py).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .fields import (DATASETS, DEFAULT_METHOD, MODELS, TARGETS, TASKS, CommonFields, ConfigError, check_hyper,
                     coerce)

__all__ = ["ConfigError", "DATASETS", "DEFAULT_METHOD", "MODELS", "TARGETS", "TASKS", "UnlearnConfig",
           "method_class"]


class UnlearnConfig(CommonFields):
    """CommonFields, `method`, and `hyper`: that method's Hyper, its defaults (default_hyper) overridden by
    the values given."""

    def __init__(self, **values: Any) -> None:
        name = values.get("method", DEFAULT_METHOD)
        method = method_class(name, "config")
        own, common = method.config_fields(), self.common_fields()
        unknown = [k for k in values if k not in own and k not in common]
        if unknown:
            raise ConfigError(refusal("config", unknown[0], name, own, common))
        super().__init__(**{k: v for k, v in values.items() if k in common})
        given = {k: v for k, v in values.items() if k in own}
        self.hyper = method.complete_hyper(dataclasses.replace(method.default_hyper(self), **given), set(given))
        self.validate()

    # ---- a method's own fields, by their plain names ---------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: the method's own fields read as cfg.<name>, as cfg.hyper.<name>.
        hyper = self.__dict__.get("hyper")
        if hyper is not None and name in hyper.__dataclass_fields__:
            return getattr(hyper, name)
        raise AttributeError(f"{type(self).__name__} of method {self.__dict__.get('method')!r} has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        hyper = self.__dict__.get("hyper")
        if hyper is not None and name in hyper.__dataclass_fields__:
            setattr(hyper, name, value)
        else:
            super().__setattr__(name, value)

    # ---- the fields, for files and tables --------------------------------------------------------------
    @classmethod
    def field_names(cls, method: str = DEFAULT_METHOD) -> list[str]:
        """A config of `method`: the common fields, then the method's own (its Hyper's, in order)."""
        return [*cls.common_fields(), *method_class(method, "config").config_fields()]

    @classmethod
    def field_types(cls, method: str = DEFAULT_METHOD) -> dict[str, Any]:
        return {**cls.common_types(), **method_class(method, "config").field_types()}

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> "UnlearnConfig":
        """Build from a plain dict (YAML, Tune config, MLflow params); refuses another method's fields,
        unknown keys and wrong types."""
        name = coerce("method", values.get("method", DEFAULT_METHOD), str, source)
        method = method_class(name, source)
        own, common = method.config_fields(), cls.common_fields()
        unknown = [k for k in values if k not in own and k not in common]
        if unknown:
            raise ConfigError(refusal(source, unknown[0], name, own, common))
        types = {**cls.common_types(), **method.field_types()}
        return cls(**{k: coerce(k, v, types[k], source) for k, v in values.items()})

    @classmethod
    def from_params(cls, params: dict[str, Any], *, source: str = "config") -> "UnlearnConfig":
        """from_dict of the config fields among `params` (an MLflow run's params, a Parquet row, a Tune
        config with extra keys): the common fields and those of its method; every other key is ignored.
        A None (a Parquet row's column of another method's field) counts as absent."""
        method = method_class(str(params.get("method", DEFAULT_METHOD)), source)
        known = {*cls.common_fields(), *method.config_fields()}
        return cls.from_dict({k: v for k, v in params.items() if k in known and v is not None}, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The common fields, then the method's own, as plain JSON/YAML types."""
        values = {**{f: getattr(self, f) for f in self.common_fields()}, **dataclasses.asdict(self.hyper)}
        return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in values.items()}

    def replace(self, **changes: Any) -> "UnlearnConfig":
        """A copy with `changes`; use this, not dataclasses.replace, which would reset the method's own
        fields (they live in cfg.hyper, beside the dataclass fields) to their defaults."""
        values = self.to_dict()
        if changes.get("method", self.method) != self.method:   # the new method starts from its own defaults
            values = {k: v for k, v in values.items() if k in self.common_fields()}
        return UnlearnConfig(**{**values, **changes})

    def truncated(self, epochs: int) -> "UnlearnConfig":
        """This config cut to its first `epochs` epochs (an ASHA-stopped trial's, re-run as ranked)."""
        return self.replace(**method_class(self.method, "config").truncated_fields(self, epochs))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnlearnConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"UnlearnConfig({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"

    @property
    def unlearn_epochs(self) -> int:
        """How many epochs (train_epoch calls) a run of this config trains: its last epoch."""
        return method_class(self.method, "config").total_epochs(self)

    def validate(self) -> None:
        self.validate_common()
        check_hyper(self.hyper, self.method)


def method_class(name: str, source: str) -> Any:
    """The method registered as `name` (mixunlearn.methods.METHODS), or a one-sentence refusal."""
    # The registry imports every method file and torch (~2 s): on first use here, not with this module, which
    # `mixsweep` loads before any heavy import. The methods never import this module: no circle to break.
    from .methods import METHODS
    if name not in METHODS:
        raise ConfigError(f"{source}: method = {name!r} is not a method; use one of {', '.join(METHODS)}")
    return METHODS[name]


def refusal(source: str, name: str, method: str, own: list[str], common: list[str]) -> str:
    from .methods import METHODS   # see method_class
    if any(name in cls.config_fields() for cls in METHODS.values()):
        return (f"{source}: field {name!r} is not a field of method {method!r}; its own fields are "
                f"{', '.join(own) or 'none'}, besides the fields every method has (data, task, model, ref_*, "
                "targets, seed, ...)")
    return f"{source}: unknown field {name!r}; allowed fields: {', '.join(sorted([*common, *own]))}"
