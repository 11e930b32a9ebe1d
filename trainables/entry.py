"""What the sweep's driver hands to Ray Tune: the trial function and the settings all its trials share.

    trainable = tune.with_parameters(unlearn_trial, settings=TrialSettings(tracking_uri=..., ...))
    tune.Tuner(tune.with_resources(trainable, {"cpu": 1, "gpu": 0.25}), ...)

Light on purpose: the driver only passes `unlearn_trial` to Tune, so this module imports neither torch
nor the methods (2-3 s of a driver's start-up). The trial's Ray worker imports trainables/trial.py, the
trial itself, when it first runs it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# In every Tune result of a trial: the epochs its config trains (UnlearnConfig.unlearn_epochs). A result
# at an earlier epoch that ends the trial is an early stop (ASHA's), not its configuration's result.
PLANNED_EPOCHS = "planned_epochs"


@dataclass(frozen=True)
class TrialSettings:
    """Sweep-level settings every trial of a sweep shares (passed with tune.with_parameters)."""
    tracking_uri: str              # MLflow: a sqlite:/// file or an http:// server
    experiment_id: str             # the MLflow experiment of the sweep's parent run
    parent_run_id: str             # the sweep's parent run: each trial's run nests under it
    # Runs above the parent that show the data too (a benchmark's run, above its method sweeps): the UI's
    # Dataset column of every level names D and D_f.
    dataset_run_ids: tuple[str, ...] = ()
    checkpoint_every: int = 1      # epochs between Tune checkpoints (the last epoch is always saved)
    cpus: float = 1.0              # CPUs Ray reserves per trial: torch uses as many threads
    gpus: float = 0.0              # GPUs Ray reserves per trial (fractions pack trials onto one GPU)
    cache_dir: str | None = None   # reference-model cache; None = $MIXSWEEP_CACHE or ~/.cache/mixsweep
    references: str | None = None  # the shared reference store (folder or URI); None = each node's cache alone
    attack_epochs: tuple[int, ...] | None = None   # where the attackers run (+ the last epoch); None = every epoch
    curve_budget: float | None = None   # the other epochs' accuracies: their share of training time; None = all
    # Extra tags on every trial's run and its name, each a str.format over the trial's config, e.g.
    # (("mixsweep.benchmark.seed", "{seed}"),) and "ga/seed{seed}" for a benchmark's seed runs; a run
    # name of None is Tune's trial name.
    run_tags: tuple[tuple[str, str], ...] = ()
    run_name: str | None = None


def unlearn_trial(config: dict[str, Any], settings: TrialSettings) -> None:
    """The Tune trainable of every sweep, ablation and benchmark: trainables/trial.py's run_trial."""
    from .trial import run_trial

    run_trial(config, settings)
