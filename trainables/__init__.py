"""Ray Tune trainables: one method = one file, a flat recipe to copy for the next method.

    from trainables import TrialSettings, mixunlearn_trial
    trainable = tune.with_parameters(mixunlearn_trial, settings=TrialSettings(...))

- mixunlearn_trial.py: the MixUnlearn trial (config -> prepare -> loop -> report/checkpoint -> MLflow).
- checkpoint.py: what a trial's checkpoint directory holds, and reading it back.
- records.py: the MLflow child/top-level runs, per-epoch metrics and end-of-run artifacts.
- datasets.py: the data (D) and the forget split (D_f) as MLflow dataset inputs of a run.

Only `ray.tune.*` is used inside a trial: Ray Train's report function fails a Tune trial, and the old AIR module is gone.
"""
from .mixunlearn_trial import TrialSettings, mixunlearn_trial

__all__ = ["TrialSettings", "mixunlearn_trial"]
