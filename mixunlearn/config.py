"""The one flat, typed config of an unlearning run.

The same dict is the Optuna trial's parameters, the Tune trial's `config`, the MLflow run's params,
the exported best-config YAML and the input of `mixsweep train CONFIG.yaml`: one spelling per field.

    cfg = UnlearnConfig(dataset="fashion_mnist", task="class", forget_class=0)
    cfg = UnlearnConfig.from_dict(yaml.safe_load(open("best.yaml")))   # unknown keys are refused
    cfg.to_dict()                                                         # plain JSON/YAML types only

Defaults follow ../shared/docs/METHOD.md (LAF's protocol, the paper's hyperparameters).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields
from typing import Any

DATASETS = ("fashion_mnist", "mnist", "cifar10", "svhn", "tiny")
TASKS = ("class", "data", "random", "noisy", "semi")
MODELS = ("cnn_small", "resnet18_cifar", "resnet18_laf")
TARGETS = ("aware", "agnostic")
GEN_TARGETS = ("current", "ema", "frozen")
REDUCTIONS = ("sum", "mean")
LAMBDA_DRAWS = ("batch", "pair")
MIXBLOCK_FORMS = ("two_way", "one_way")
MIXBLOCK_ACTS = ("relu", "none")


class ConfigError(ValueError):
    """A user-supplied config value is impossible; the message names the field and what is allowed."""


@dataclass
class UnlearnConfig:
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

    # ---- MixUnlearn (METHOD.md "Hyperparameters") -------------------------------------------
    targets: str = "agnostic"          # "aware": one-hot(y); "agnostic": Sharpen(softmax(f_D(x)), T)
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
    seed: int = 0                      # seeds the unlearning loop (lambda, pairings, retain order)
    device: str = "auto"               # "auto" = cuda if available, else cpu; a trial passes Ray's device
    eval_batch_size: int = 1024        # batched forward passes for evaluation and cached f_D outputs
    mia_samples: int = 5000            # cap per side for the ASR / MIA attackers' training sets

    # ------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in fields(cls)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> "UnlearnConfig":
        """Build from a plain dict (YAML, Tune config, MLflow params); refuses unknown keys and wrong types."""
        known = set(cls.field_names())
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field {unknown[0]!r}; allowed fields: {', '.join(sorted(known))}")
        types = cls.field_types()
        coerced = {k: coerce(k, v, types[k], source) for k, v in values.items()}
        return cls(**coerced)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> "UnlearnConfig":
        return UnlearnConfig.from_dict({**self.to_dict(), **changes})

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
                     "eval_batch_size", "mia_samples"):
            need(getattr(self, name) >= 1, name, "it must be a positive integer")
        for name in ("alpha", "tau_gen", "tau_mix", "tau_real", "sharpen_T", "lr_unlearner", "lr_generator",
                     "ref_lr"):
            need(getattr(self, name) > 0, name, "it must be positive")
        need(self.omega >= 0, "omega", "it must be >= 0 (0 disables L_real)")
        need(self.mask_lambda_weight >= 0, "mask_lambda_weight", "it must be >= 0 (0 disables the mask regulariser)")
        need(self.ref_weight_decay >= 0, "ref_weight_decay", "it must be >= 0")
        need(0.0 <= self.ema_momentum < 1.0, "ema_momentum", "it must lie in [0, 1)")
        need(self.use_mix_loss or self.omega > 0, "omega", "with use_mix_loss = false, omega must be > 0 "
             "or nothing is optimised")


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
