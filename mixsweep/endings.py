"""What a trial's end means, in one place: completed, stopped early, diverged, failed or lost.

Optuna (mixsweep/optuna_search.py), MLflow (mixsweep/callback.py), a resume (mixsweep/reconcile.py), the
console and the figures read a trial's ending by the same rule, so that no record calls the epoch-1 value
of a trial ASHA stopped the result of its configuration:

| ending        | when                                              | Optuna   | MLflow                                  |
|---------------|---------------------------------------------------|----------|-----------------------------------------|
| completed     | its last result is at its planned last epoch      | COMPLETE | FINISHED                                |
| stopped early | its last result is at an earlier epoch (ASHA)     | PRUNED   | FINISHED, stopped_early, stopped_at_epoch |
| diverged      | a NaN or Inf loss (the trial reports `diverged`)  | FAIL     | FAILED, diverged                        |
| failed        | an error Tune gave up on, or no finite objective  | FAIL     | FAILED                                  |
| lost          | running when its driver was killed, not resumed   | FAIL     | KILLED, lost (Tune: ERROR)              |

KILLED without the lost tag is a person's stop (Ctrl-C, `ray job stop`): `mixsweep resume` continues it.
Only completed trials are one fidelity (every one ran its configuration); a stopped trial's values are
comparable only with other trials' values at the same epoch (a rung).
"""
from __future__ import annotations

import math
from typing import Any

from trainables.entry import PLANNED_EPOCHS

COMPLETED, STOPPED_EARLY, DIVERGED, FAILED, LOST = "completed", "stopped_early", "diverged", "failed", "lost"


def planned_epochs(result: dict[str, Any], config: dict[str, Any]) -> int:
    """The epochs the trial's config trains: its results say so; results recorded before they did are
    read through the config (which loads the methods for a baseline: only old records take that path)."""
    value = result.get(PLANNED_EPOCHS)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return int(value)
    from mixunlearn.config import UnlearnConfig

    return UnlearnConfig.from_params(config, source="trial config").unlearn_epochs


def ending(result: dict[str, Any] | None, config: dict[str, Any], objectives: list[str], *,
           error: bool = False) -> str:
    """The ending of a trial whose last Tune result is `result` (None: it never reported)."""
    if error or not result or not isinstance(result.get("epoch"), (int, float)):
        return FAILED
    if result.get("diverged"):
        return DIVERGED
    if not all(finite(result.get(metric)) for metric in objectives):
        return FAILED
    return STOPPED_EARLY if int(result["epoch"]) < planned_epochs(result, config) else COMPLETED


def completed(result: dict[str, Any] | None, config: dict[str, Any], objectives: list[str]) -> bool:
    """Whether the trial ran its configuration to its end with a finite objective: the one fidelity the
    figures and the console's best-so-far line compare."""
    return ending(result, config, objectives) == COMPLETED


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
