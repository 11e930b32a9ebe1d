"""The fields every method has (data, task, models, label access, run), their checks, and the coercion of
YAML and MLflow values: the bottom of the config's layers.

    mixunlearn/fields.py          CommonFields, ConfigError, coerce             (no torch, no methods)
      <- data, tasks, models, reference, methods/*   read a config's common fields; a method's own fields
                                                     are its Hyper dataclass, in its own file
      <- mixunlearn/config.py     UnlearnConfig = CommonFields + `method` + that method's Hyper
                                  (it looks the method up in mixunlearn.methods.METHODS)

Nothing here imports the methods, and no method imports config.py: the import graph has no circle.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from typing import Any

DATASETS = ("fashion_mnist", "mnist", "cifar10", "svhn", "tiny")
TASKS = ("class", "data", "random", "noisy", "semi")
MODELS = ("cnn_small", "cnn_laf", "resnet18_cifar", "resnet18_laf")
TARGETS = ("aware", "agnostic")
DEFAULT_METHOD = "mixunlearn"


class ConfigError(ValueError):
    """A user-supplied config value is impossible; the message names the field and what is allowed."""


@dataclass(eq=False)
class CommonFields:
    # ---- method -----------------------------------------------------------------------------
    method: str = DEFAULT_METHOD       # a key of mixunlearn.methods.METHODS; its own fields are its Hyper's

    # ---- data -------------------------------------------------------------------------------
    dataset: str = "fashion_mnist"     # one of DATASETS; "tiny" is a built-in synthetic set for unit tests
    data_root: str = ""                # torchvision-layout root; "" = $MIXSWEEP_DATA or ~/.cache/mixsweep/data
    train_subset: int = 0              # images per class kept from the training set (0 = all); class-stratified
    test_subset: int = 0               # images per class kept from the test set (0 = all)

    # ---- forget task (METHOD.md "Unlearning tasks"); a split is a pure function of these + ref_seed
    task: str = "class"                # one of TASKS
    forget_class: int = 0              # class task: the class forgotten (paper: 0)
    data_classes: list[int] = field(default_factory=lambda: [5, 6, 7, 8, 9])  # data task: classes sampled
    data_ratio: float = 0.4            # data task: fraction of each of data_classes forgotten (LAF: 40%)
    random_ratio: float = 0.1          # random task: fraction of all samples forgotten (SalUn: 10%)
    noisy_classes: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # noisy task: classes relabelled
    noise_ratio: float = 0.6           # noisy task: fraction of noisy_classes relabelled to a wrong class
    semi_base: str = "class"           # semi task: the split it reuses ("class" or "data")
    label_fraction: float = 0.1        # semi task: fraction of samples whose label is seen during unlearning

    # ---- models -----------------------------------------------------------------------------
    model: str = "cnn_small"           # one of MODELS; resnet18_laf is the paper's expensive 224x224 track
    ref_epochs: int = 20               # f_D / Retrain recipe (LAF): Adam, cross-entropy
    ref_batch_size: int = 32
    ref_lr: float = 1e-4
    ref_weight_decay: float = 1e-4
    ref_augment: bool = False          # random crop + flip while training f_D / Retrain (CIFAR-style sets)
    ref_seed: int = 0                  # seeds the split and the reference models; shared by every trial

    # ---- label access, every method (BASELINES.md "Label access") ----------------------------
    targets: str = "agnostic"          # "aware": the true labels; "agnostic": f_D's outputs wherever a method
                                       # reads a label (MixUnlearn: Sharpen(softmax(f_D(x)), T); a baseline: arg-max)

    # ---- run --------------------------------------------------------------------------------
    seed: int = 0                      # seeds the unlearning loop (lambda, pairings, orders, random labels)
    device: str = "auto"               # "auto" = cuda if available, else cpu; a trial passes Ray's device
    eval_batch_size: int = 1024        # batched forward passes for evaluation and cached f_D outputs
    mia_samples: int = 5000            # cap per side for the ASR / MIA attackers' training sets
    eval_seed: int = 0                 # seeds the population attackers' draws (MIA-Efficacy, ASR, DU's MIA), never
                                       # `seed`: one model gets one number whatever run produced it
    attack_draws: int = 5              # attacker draws averaged per evaluation; their spread is reported (*_std)
    judge_models: int = 0              # N > 0: each evaluation also reports oracle_nll, the model's margins under the
                                       # N oracles of the audit pool (mixunlearn/judge/objective.py); 0 = none

    @classmethod
    def common_fields(cls) -> list[str]:
        """The fields every method has: method, data, task, models, label access, run."""
        return [f.name for f in fields(CommonFields)]

    @classmethod
    def common_types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(CommonFields)
        return {name: hints[name] for name in cls.common_fields()}

    def validate_common(self) -> None:
        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ConfigError(f"{name} = {getattr(self, name)!r} is not allowed; {allowed}")

        need(self.dataset in DATASETS, "dataset", f"use one of {', '.join(DATASETS)}")
        need(self.task in TASKS, "task", f"use one of {', '.join(TASKS)}")
        need(self.model in MODELS, "model", f"use one of {', '.join(MODELS)}")
        need(self.targets in TARGETS, "targets", f"use one of {', '.join(TARGETS)}")
        need(self.semi_base in ("class", "data"), "semi_base", "use 'class' or 'data'")
        for name in ("data_ratio", "random_ratio", "noise_ratio"):
            need(0.0 < getattr(self, name) < 1.0, name, "it must lie strictly between 0 and 1")
        need(0.0 < self.label_fraction <= 1.0, "label_fraction", "it must lie in (0, 1]")
        for name in ("train_subset", "test_subset"):
            need(getattr(self, name) >= 0, name, "use 0 for the whole set or a positive count per class")
        for name in ("ref_epochs", "ref_batch_size", "eval_batch_size", "mia_samples", "attack_draws"):
            need(getattr(self, name) >= 1, name, "it must be a positive integer")
        need(self.ref_lr > 0, "ref_lr", "it must be positive")
        need(self.ref_weight_decay >= 0, "ref_weight_decay", "it must be >= 0")
        need(self.judge_models == 0 or self.judge_models >= 3, "judge_models",
             "use 0 (no oracle objective) or a pool of at least 3 oracles (16 or more to be stable)")


def check_hyper(hyper: Any, method: str) -> None:
    """A method's own fields (its Hyper): positive sizes and rates by their names, [choice] fields among
    their `choices`, then the Hyper's own `validate()` where it has one. A refusal is one ConfigError
    naming the field, the method and what is allowed."""
    choices = getattr(type(hyper), "choices", {})
    for f in fields(hyper):
        name, value = f.name, getattr(hyper, f.name)
        if name in choices and value not in choices[name]:
            allowed = f"use one of {', '.join(map(str, choices[name]))}"
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        elif (name in ("epochs", "k", "msteps") or name.endswith("batch_size") or name == "latent") and value < 1:
            allowed = "it must be a positive integer"
        elif name.endswith("epochs") and value < 0:
            allowed = "it must be >= 0"
        elif (name == "lr" or name.startswith("lr_") or name.endswith("_lr")) and value <= 0:
            allowed = "it must be positive"
        else:
            continue
        raise ConfigError(f"{name} = {value!r} is not allowed for method {method!r}; {allowed}")
    if hasattr(hyper, "validate"):
        hyper.validate()


# ---- values from YAML, Tune and MLflow (strings) ------------------------------------------------

def coerce(name: str, value: Any, annotation: Any, source: str) -> Any:
    """Coerce a YAML/MLflow-string value to the field's type, or say which field and type is wanted."""
    origin = typing.get_origin(annotation)
    try:
        if origin is list:
            if isinstance(value, str):
                value = [v for v in value.strip("[]() ").replace(",", " ").split() if v]
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return [coerce_scalar(v, int) for v in value]
        return coerce_scalar(value, annotation)
    except (TypeError, ValueError):
        kind = "a list of integers" if origin is list else f"a value of type {annotation.__name__}"
        raise ConfigError(f"{source}: field {name!r} = {value!r} is not {kind}") from None


def coerce_scalar(value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise TypeError
    if kind is int:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, float) and not value.is_integer():
            raise TypeError
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise TypeError
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    raise TypeError
