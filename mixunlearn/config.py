"""The one flat, typed config of an unlearning run.

The same dict is the Optuna trial's parameters, the Tune trial's `config`, the MLflow run's params,
the exported best-config YAML and the input of `mixsweep train CONFIG.yaml`: one spelling per field.

    cfg = UnlearnConfig(dataset="fashion_mnist", task="class", forget_class=0)
    cfg = UnlearnConfig.from_dict(yaml.safe_load(open("best.yaml")))   # unknown keys are refused
    cfg = UnlearnConfig.from_dict({"method": "ga", "lr": 0.01})         # a baseline and its own fields
    cfg.to_dict()                                                         # plain JSON/YAML types only

The fields are the common ones (data, task, models, targets, run) plus those of `method`: MixUnlearn's are
the section below; every other method's are its Hyper dataclass (mixunlearn/methods/<name>.py), by their
plain names (`lr`, `epochs`, `batch_size`, ...). A field of another method is refused, naming the method
and its fields, and `to_dict()` holds only the common fields and the method's own: that is what a run
logs to MLflow and what an export writes.

Defaults follow ../shared/docs/METHOD.md (LAF's protocol, the paper's hyperparameters).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields
from typing import Any

DATASETS = ("fashion_mnist", "mnist", "cifar10", "svhn", "tiny")
TASKS = ("class", "data", "random", "noisy", "semi")
MODELS = ("cnn_small", "cnn_laf", "resnet18_cifar", "resnet18_laf")
TARGETS = ("aware", "agnostic")
GEN_TARGETS = ("current", "ema", "frozen")
REDUCTIONS = ("sum", "mean")
LAMBDA_DRAWS = ("batch", "pair")
MIXBLOCK_FORMS = ("two_way", "one_way")
MIXBLOCK_ACTS = ("relu", "none")


class ConfigError(ValueError):
    """A user-supplied config value is impossible; the message names the field and what is allowed."""


@dataclass(eq=False)
class UnlearnConfig:
    # ---- method -----------------------------------------------------------------------------
    method: str = "mixunlearn"         # a key of mixunlearn.methods.METHODS (DEFAULT_METHOD); its own fields follow

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

    # ---- MixUnlearn (METHOD.md "Hyperparameters") -------------------------------------------
    sharpen_T: float = 0.3             # Sharpen temperature T
    alpha: float = 0.75                # lambda ~ Beta(alpha, alpha)
    omega: float = 1.0                 # weight of L_real in Eq. 7 (0 = the "without L_real" ablation)
    tau_gen: float = 20.0              # temperature of L_gen (Eq. 3)
    tau_mix: float = 20.0              # temperature of L_mix (Eq. 5)
    tau_real: float = 20.0             # temperature of L_real (Eq. 6)
    gen_interval: int = 4              # K: unlearner steps per generator update
    gen_steps: int = 1                 # generator steps each time it is updated
    gen_target: str = "current"        # network G attacks: f_U (paper), its EMA (released code), or f_D
    ema_momentum: float = 0.999        # for gen_target = "ema"
    lr_unlearner: float = 5e-5         # Adam; METHOD.md: 1e-5 for ResNet, 5e-5 for the CNN
    lr_generator: float = 1e-3         # Adam
    epochs: int = 20                   # unlearning epochs (LAF: 20 for the CNN, 40 for ResNet)
    batch_size: int = 32               # N: (forget, retain) pairs per step
    reduction: str = "sum"             # how C reduces over the batch: "sum" (released) or "mean"

    # ---- the generator's form (METHOD.md "What the released code shows, and what it leaves open")
    lambda_draw: str = "batch"         # "batch": one lambda per step for G's mix, another for f_U's (the
                                       # release's scalar np.random.beta); "pair": one per pair (the spec's reading)
    mixblock_form: str = "two_way"     # "two_way": the spec's cross-attention both ways, softmax over 2 channels;
                                       # "one_way": OpenMixup's pixel MixBlock (AutoMix), sigmoid mask, 33,282 params
    mixblock_act: str = "relu"         # after q and k: "relu" (the spec) or "none" (OpenMixup's default)
    mask_lambda_weight: float = 0.0    # AutoMix's L1 pull of G's mask mean towards lambda, added to L_gen;
                                       # 0 = none, as in the MixUnlearn release

    # ---- ablation switches (paper Table 3) --------------------------------------------------
    use_mix_loss: bool = True          # False = "without L_mix": L_unlearn = omega * L_real
    use_mixblock: bool = True          # False = "without MixBlock": plain Beta(alpha, alpha) mixup masks
    use_sharpen: bool = True           # False = "without Sharpen": agnostic targets are plain softmax
    exclude_same_class_pairs: bool = False  # never mix a forget sample with a retain sample of its class

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

    # ------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        # A baseline's own fields, resolved: its source's defaults (cnn_small: the measured ones), then the
        # values given. MixUnlearn's own fields are the dataclass section above, so it keeps none here.
        method = method_class(self.method, "config")
        self._hyper: dict[str, Any] = (dataclasses.asdict(method.default_hyper(self))
                                       if method.Hyper is not None else {})
        self.validate()

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in fields(cls)}

    @classmethod
    def common_fields(cls) -> list[str]:
        """The fields every method has: data, task, models, label access, run."""
        return [name for name in cls.field_names() if name not in MIXUNLEARN_FIELDS]

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> "UnlearnConfig":
        """Build from a plain dict (YAML, Tune config, MLflow params); refuses another method's fields,
        unknown keys and wrong types."""
        name = coerce("method", values.get("method", DEFAULT_METHOD), str, source)
        method = method_class(name, source)
        own = method.config_fields()
        common = cls.common_fields()
        unknown = [k for k in values if k not in own and k not in common]
        if unknown:
            raise ConfigError(refusal(source, unknown[0], name, own, common))
        types = {**cls.field_types(), **method.field_types()}
        coerced = {k: coerce(k, v, types[k], source) for k, v in values.items()}
        on_hyper = method.Hyper is not None   # a baseline's own fields live in its Hyper, not on the dataclass
        cfg = cls(**{k: v for k, v in coerced.items() if k in common or not on_hyper})
        if on_hyper and len(coerced) > len(set(coerced) & set(common)):
            cfg._hyper.update({k: v for k, v in coerced.items() if k in own})
            cfg.validate()
        return cfg

    @classmethod
    def from_params(cls, params: dict[str, Any], *, source: str = "config") -> "UnlearnConfig":
        """from_dict of the config fields among `params` (an MLflow run's params, a Parquet row, a Tune
        config with extra keys): the common fields and those of its method; every other key is ignored."""
        method = method_class(str(params.get("method", DEFAULT_METHOD)), source)
        known = {*cls.common_fields(), *method.config_fields()}
        return cls.from_dict({k: v for k, v in params.items() if k in known}, source=source)

    def truncated(self, epochs: int) -> "UnlearnConfig":
        """This config cut to its first `epochs` epochs (an ASHA-stopped trial's, re-run as ranked)."""
        return self.replace(**method_class(self.method, "config").truncated_fields(self, epochs))

    def to_dict(self) -> dict[str, Any]:
        """The common fields and the method's own, as plain JSON/YAML types."""
        values = {k: v for k, v in dataclasses.asdict(self).items()
                  if k not in MIXUNLEARN_FIELDS or self.method == DEFAULT_METHOD}
        values.update(self._hyper)
        return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in values.items()}

    def replace(self, **changes: Any) -> "UnlearnConfig":
        """A copy with `changes`; use this, not dataclasses.replace, which would reset a baseline's own
        fields (they live beside the dataclass fields) to their defaults."""
        values = self.to_dict()
        if changes.get("method", self.method) != self.method:   # the new method starts from its own defaults
            values = {k: v for k, v in values.items() if k in self.common_fields()}
        return UnlearnConfig.from_dict({**values, **changes})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnlearnConfig) and self.to_dict() == other.to_dict()

    @property
    def hyper(self) -> Any:
        """The method's typed hyperparameters (its Hyper dataclass); for MixUnlearn, this config itself."""
        method = method_class(self.method, "config")
        return method.Hyper(**self._hyper) if method.Hyper is not None else self

    @property
    def unlearn_epochs(self) -> int:
        """How many epochs (train_epoch calls) a run of this config trains: its last epoch."""
        return method_class(self.method, "config").total_epochs(self)

    def validate(self) -> None:
        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ConfigError(f"{name} = {getattr(self, name)!r} is not allowed; {allowed}")

        need(self.dataset in DATASETS, "dataset", f"use one of {', '.join(DATASETS)}")
        need(self.task in TASKS, "task", f"use one of {', '.join(TASKS)}")
        need(self.model in MODELS, "model", f"use one of {', '.join(MODELS)}")
        need(self.targets in TARGETS, "targets", f"use one of {', '.join(TARGETS)}")
        need(self.gen_target in GEN_TARGETS, "gen_target", f"use one of {', '.join(GEN_TARGETS)}")
        need(self.reduction in REDUCTIONS, "reduction", f"use one of {', '.join(REDUCTIONS)}")
        need(self.lambda_draw in LAMBDA_DRAWS, "lambda_draw", f"use one of {', '.join(LAMBDA_DRAWS)}")
        need(self.mixblock_form in MIXBLOCK_FORMS, "mixblock_form", f"use one of {', '.join(MIXBLOCK_FORMS)}")
        need(self.mixblock_act in MIXBLOCK_ACTS, "mixblock_act", f"use one of {', '.join(MIXBLOCK_ACTS)}")
        need(self.semi_base in ("class", "data"), "semi_base", "use 'class' or 'data'")
        for name in ("data_ratio", "random_ratio", "noise_ratio"):
            need(0.0 < getattr(self, name) < 1.0, name, "it must lie strictly between 0 and 1")
        need(0.0 < self.label_fraction <= 1.0, "label_fraction", "it must lie in (0, 1]")
        for name in ("train_subset", "test_subset"):
            need(getattr(self, name) >= 0, name, "use 0 for the whole set or a positive count per class")
        for name in ("ref_epochs", "ref_batch_size", "epochs", "batch_size", "gen_interval", "gen_steps",
                     "eval_batch_size", "mia_samples", "attack_draws"):
            need(getattr(self, name) >= 1, name, "it must be a positive integer")
        for name in ("alpha", "tau_gen", "tau_mix", "tau_real", "sharpen_T", "lr_unlearner", "lr_generator",
                     "ref_lr"):
            need(getattr(self, name) > 0, name, "it must be positive")
        need(self.omega >= 0, "omega", "it must be >= 0 (0 disables L_real)")
        need(self.mask_lambda_weight >= 0, "mask_lambda_weight", "it must be >= 0 (0 disables the mask regulariser)")
        need(self.ref_weight_decay >= 0, "ref_weight_decay", "it must be >= 0")
        need(self.judge_models == 0 or self.judge_models >= 3, "judge_models",
             "use 0 (no oracle objective) or a pool of at least 3 oracles (16 or more to be stable)")
        need(0.0 <= self.ema_momentum < 1.0, "ema_momentum", "it must lie in [0, 1)")
        need(self.use_mix_loss or self.omega > 0, "omega", "with use_mix_loss = false, omega must be > 0 "
             "or nothing is optimised")
        self.validate_hyper()

    def validate_hyper(self) -> None:
        """A baseline's own fields: positive sizes and rates, and its [choice] fields among their choices."""
        choices = getattr(method_class(self.method, "config").Hyper, "choices", {})
        for name, value in self._hyper.items():
            if name in choices and value not in choices[name]:
                allowed = f"use one of {', '.join(choices[name])}"
            elif (name in ("epochs", "k", "msteps") or name.endswith("batch_size") or name == "latent") and value < 1:
                allowed = "it must be a positive integer"
            elif name.endswith("epochs") and value < 0:
                allowed = "it must be >= 0"
            elif (name == "lr" or name.startswith("lr_") or name.endswith("_lr")) and value <= 0:
                allowed = "it must be positive"
            else:
                continue
            raise ConfigError(f"{name} = {value!r} is not allowed for method {self.method!r}; {allowed}")


# MixUnlearn's own fields: the dataclass section from sharpen_T to exclude_same_class_pairs. Every other
# field is common to all methods.
_NAMES = [f.name for f in fields(UnlearnConfig)]
DEFAULT_METHOD = "mixunlearn"
MIXUNLEARN_FIELDS: tuple[str, ...] = tuple(_NAMES[_NAMES.index("sharpen_T"):_NAMES.index("exclude_same_class_pairs") + 1])
del _NAMES


class MixUnlearnFields:
    """MixUnlearn as the config sees it (mixunlearn.unlearn.MixUnlearn inherits it): its fields are this
    dataclass's own section, so a MixUnlearn config is validated without importing the methods (and
    torch), and `mixsweep` refuses a bad space file in a blink."""
    Hyper = None

    @staticmethod
    def default_hyper(cfg: "UnlearnConfig") -> "UnlearnConfig":
        """MixUnlearn's hyperparameters are the config's own fields: the config is its Hyper."""
        return cfg

    @staticmethod
    def config_fields() -> list[str]:
        return list(MIXUNLEARN_FIELDS)

    @staticmethod
    def field_types() -> dict[str, Any]:
        types = UnlearnConfig.field_types()
        return {name: types[name] for name in MIXUNLEARN_FIELDS}

    @staticmethod
    def total_epochs(cfg: "UnlearnConfig") -> int:
        return cfg.epochs

    @staticmethod
    def truncated_fields(cfg: "UnlearnConfig", epochs: int) -> dict[str, int]:
        return {"epochs": epochs}


def method_class(name: str, source: str) -> Any:
    """The method registered as `name` (mixunlearn.methods.METHODS), or a one-sentence refusal."""
    if name == DEFAULT_METHOD:
        return MixUnlearnFields
    from .methods import METHODS   # here, not at the top: the methods import this module (and torch)
    if name not in METHODS:
        raise ConfigError(f"{source}: method = {name!r} is not a method; use one of {', '.join(METHODS)}")
    return METHODS[name]


def refusal(source: str, name: str, method: str, own: list[str], common: list[str]) -> str:
    from .methods import METHODS
    if any(name in cls.config_fields() for cls in METHODS.values()):
        return (f"{source}: field {name!r} is not a field of method {method!r}; its own fields are "
                f"{', '.join(own) or 'none'}, besides the fields every method has (data, task, model, ref_*, "
                "targets, seed, ...)")
    return f"{source}: unknown field {name!r}; allowed fields: {', '.join(sorted([*common, *own]))}"


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
