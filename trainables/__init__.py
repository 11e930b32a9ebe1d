"""Ray Tune trainables: one trial function for every method (the method is a config field).

    from trainables import TrialSettings, unlearn_trial
    trainable = tune.with_parameters(unlearn_trial, settings=TrialSettings(...))

- entry.py: what the driver hands to Tune (unlearn_trial, TrialSettings); it loads no torch.
- trial.py: the trial of every method (config -> prepare -> the method's loop -> report/checkpoint -> MLflow).
- checkpoint.py: what a trial's checkpoint directory holds, and reading it back.
- records.py: the MLflow child/top-level runs, per-epoch metrics and end-of-run artifacts.
- datasets.py: the data (D) and the forget split (D_f) as MLflow dataset inputs of a run.

Only `ray.tune.*` is used inside a trial: Ray Train's report function fails a Tune trial, and the old AIR module is gone.
"""
from .entry import TrialSettings, unlearn_trial

__all__ = ["TrialSettings", "unlearn_trial"]
