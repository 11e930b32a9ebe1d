"""Intervals for every figure a table shows, and when two of them separate.

    cell = mean_interval([3.1, 2.7, 3.4])           # Interval(mean, low, high, n): 95% percentile bootstrap
    cell.separates(other)                           # disjoint intervals: an order that means something
    ranks = confident_ranks({"GA": cell, ...})      # 1 + how many rows are better with confidence
    low, high = model_bootstrap(stat, a, b)         # resampling each pool's models (rows)
    low, high = median_interval(per_point)          # resampling the points, e.g. KLOM's median

A cell is a mean with a 95% interval (EVALUATION.md "Statistics in every table"): a percentile bootstrap of
the mean over what varies (the seeds a method ran, the models of a pool), from `scipy.stats.bootstrap`
with a fixed generator, so the same numbers give the same interval. One value has no spread: its interval
is unknown (NaN) and separates from nothing, except a reference measured once by construction (f_D's or
Retrain's single model in a table without an audit), which is a point (`Interval.point`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 9999
SEED = 0


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float     # NaN: not known (fewer than 2 values)
    high: float
    n: int

    @staticmethod
    def point(value: float) -> "Interval":
        """A single measurement that is the quantity itself (one fixed model's number): [v, v]."""
        return Interval(float(value), float(value), float(value), 1 if math.isfinite(value) else 0)

    @property
    def known(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def separates(self, other: "Interval") -> bool:
        """Both intervals known and disjoint."""
        return self.known and other.known and (self.high < other.low or other.high < self.low)

    def below(self, other: "Interval") -> bool:
        """Smaller than `other` with confidence: both known, this one's top under the other's bottom."""
        return self.known and other.known and self.high < other.low

    def distance_to(self, target: float) -> "Interval":
        """|x - target| for x in the interval: the interval of a distance to Retrain's value."""
        mean = abs(self.mean - target)
        if not self.known:
            return Interval(mean, math.nan, math.nan, self.n)
        low = 0.0 if self.low <= target <= self.high else min(abs(self.low - target), abs(self.high - target))
        return Interval(mean, low, max(abs(self.low - target), abs(self.high - target)), self.n)


def mean_interval(values: Sequence[float], *, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                  seed: int = SEED) -> Interval:
    """The mean of the finite values and its percentile-bootstrap interval; NaN bounds with fewer than 2."""
    finite = np.asarray([v for v in values if math.isfinite(v)], np.float64)
    if finite.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(finite.mean())
    if finite.size < 2:
        return Interval(mean, math.nan, math.nan, 1)
    if np.all(finite == finite[0]):   # no spread: every resample is the same mean
        return Interval(mean, mean, mean, int(finite.size))
    from scipy.stats import bootstrap

    result = bootstrap((finite,), np.mean, n_resamples=resamples, confidence_level=confidence,
                       method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return Interval(mean, float(ci.low), float(ci.high), int(finite.size))


def model_bootstrap(statistic: Callable[..., float], *samples: np.ndarray, resamples: int = 200,
                    confidence: float = CONFIDENCE, seed: int = SEED) -> tuple[float, float]:
    """Percentile interval of statistic(*samples) when each sample's rows (its models) are drawn again
    with replacement, each independently. For the audit's figures: what another pool of the same size
    would have given."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        drawn = [s[rng.integers(0, len(s), len(s))] for s in samples]
        values.append(statistic(*drawn))
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0 * 100.0
    return float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail))


def median_interval(values: np.ndarray, *, resamples: int = 1000, confidence: float = CONFIDENCE,
                    seed: int = SEED) -> tuple[float, float]:
    """Percentile interval of the median of per-point values when the points are drawn again."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    medians = np.median(values[rng.integers(0, values.size, (resamples, values.size))], axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100.0 - tail))


def confident_ranks(cells: dict[str, Interval], *, lower_is_better: bool = True) -> dict[str, int]:
    """Per row: 1 + the number of rows better than it with confidence (intervals disjoint, theirs on the
    better side). Rows whose intervals overlap share a rank; a row with an unknown interval is beaten by
    none and beats none. A row without a mean ranks last."""
    ranks = {}
    for name, cell in cells.items():
        if not math.isfinite(cell.mean):
            ranks[name] = len(cells)
            continue
        better = [other for key, other in cells.items() if key != name and math.isfinite(other.mean)
                  and (other.below(cell) if lower_is_better else cell.below(other))]
        ranks[name] = 1 + len(better)
    return ranks


def beats(a: Interval, b: Interval, *, lower_is_better: bool = True) -> bool:
    """a is better than b with confidence."""
    return a.below(b) if lower_is_better else b.below(a)
