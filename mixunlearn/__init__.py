"""MixUnlearn (Adversarial Mixup Unlearning, ICLR 2025) in plain PyTorch.

No Ray, Optuna or MLflow here: the method runs from a script or a notebook.

    from mixunlearn import UnlearnConfig, run
    print(run(UnlearnConfig(dataset="fashion_mnist", task="class", forget_class=0)).table())
"""
from .config import ConfigError, UnlearnConfig
from .data import DatasetNotFound, ImageData, load_data, load_dataset
from .losses import contrastive, generator_loss, make_targets, mix_loss, real_loss, sharpen, sim_loss
from .metrics import ATTACKER, avg_gap, evaluate
from .mixblock import MixBlock
from .models import build_model
from .reference import References, reference_models
from .run import Prepared, RunResult, epochs, format_table, prepare, run
from .tasks import ForgetSplit, TaskSpecError, make_split
from .unlearn import MixUnlearn

__all__ = [
    "ATTACKER", "ConfigError", "DatasetNotFound", "ForgetSplit", "ImageData", "MixBlock", "MixUnlearn",
    "Prepared", "References", "RunResult", "TaskSpecError", "UnlearnConfig", "avg_gap", "build_model",
    "contrastive", "epochs", "evaluate", "format_table", "generator_loss", "load_data", "load_dataset",
    "make_split", "make_targets", "mix_loss", "prepare", "real_loss", "reference_models", "run", "sharpen",
    "sim_loss",
]
