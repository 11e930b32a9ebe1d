"""KLOM: per point, the KL divergence between the margins of the oracles and of the unlearned models.

    kl = klom(unlearned_phi, oracle_phi)        # [P]: KL(oracle || unlearned) per point; models in rows
    floor = noise_floor(oracle_phi)             # [P]: the same between two disjoint halves of the oracles
    summary(kl)                                 # {"median": ..., "p95": ...}

Georgiev et al., "Attribute-to-Delete", arXiv 2410.23232, App. E.1; code: RoyRin/data-unlearning-bench,
`unlearning_bench/eval.py` (`compute_binned_KL_div`). As there: margins are clipped to [-100, 100], binned into
equal-width bins over the joint range of both samples (a range of width 0 becomes [lo, lo + 1]), the
unlearned probabilities are floored at 1e-5 where an oracle bin is occupied, and both are normalised
(`scipy.stats.entropy`'s convention).

Direction: KL(oracle || unlearned), the paper's definition and what data-unlearning-bench ships (its run.py
passes the arguments the other way round to the function's signature). It is large where the oracles put
mass on margins the unlearned models never reach, e.g. an unlearned model still confident on a forget point
that every oracle gets wrong.

Two differences, both deliberate:
- The bin count is round(sqrt(n)) for n models per side (at least 2), not a fixed 20: with 20 bins and the
  8-16 models a CPU pool holds, most bins are empty and the estimate is dominated by them (issue 18's
  probe). A caller can pass `bins`.
- The largest sample falls in the last bin (np.histogram's closed last bin); eval.py's np.digitize drops it.

The noise floor is the same statistic between the even- and the odd-seeded oracles, so it is KLOM at n/2
models per side: the value a perfect unlearner's KLOM is indistinguishable from at this pool size (larger
than that of N against N, so a method within it is judged conservatively in its favour).
"""
from __future__ import annotations

import math

import numpy as np

CLIP = 100.0   # data-unlearning-bench's clip_min / clip_max
EPS = 1e-5     # its floor of the unlearned probabilities


def bin_count(models: int) -> int:
    """Equal-width bins for `models` samples a side: round(sqrt(models)), at least 2."""
    return max(2, int(round(math.sqrt(models))))


def histograms(samples: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts [bins, P] of samples [n, P] per column, in the columns' edges [bins + 1, P]; a value on an
    inner edge goes to the bin above it, the last edge to the last bin (np.histogram's rule)."""
    inner = edges[1:-1]                                               # [bins - 1, P]
    index = (samples[:, None, :] >= inner[None, :, :]).sum(axis=1)    # [n, P], in 0 .. bins - 1
    bins = edges.shape[0] - 1
    return (index[:, None, :] == np.arange(bins)[None, :, None]).sum(axis=0)


def klom(unlearned: np.ndarray, oracle: np.ndarray, *, bins: int | None = None, clip: float = CLIP,
         eps: float = EPS) -> np.ndarray:
    """KL(oracle || unlearned) per point, float64 [P], from margins [n_unlearned, P] and [n_oracle, P]."""
    u = np.clip(np.asarray(unlearned, np.float64), -clip, clip)
    o = np.clip(np.asarray(oracle, np.float64), -clip, clip)
    assert u.ndim == o.ndim == 2 and u.shape[1] == o.shape[1], "margins are [models, points], same points"
    assert len(u) and len(o), "KLOM needs models on both sides"
    bins = bins or bin_count(min(len(u), len(o)))
    lo = np.minimum(u.min(axis=0), o.min(axis=0))
    hi = np.maximum(u.max(axis=0), o.max(axis=0))
    hi = np.where(hi > lo, hi, lo + 1.0)
    edges = np.linspace(lo, hi, bins + 1)                             # [bins + 1, P], as np.histogram's
    p = histograms(o, edges) / len(o)
    q = histograms(u, edges) / len(u)
    q = np.where(p > 0, np.maximum(q, eps), q)
    q = q / q.sum(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / q), 0.0)
    return terms.sum(axis=0)


def halves(models: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The even- and the odd-indexed models (seeds 0, 2, ... and 1, 3, ...): two disjoint halves."""
    return models[0::2], models[1::2]


def noise_floor(oracle: np.ndarray, *, bins: int | None = None) -> np.ndarray:
    """KLOM per point between two disjoint halves of the oracles: the odd half as the 'unlearned' side."""
    even, odd = halves(np.asarray(oracle))
    assert len(odd) >= 1, "a noise floor needs at least 2 oracles"
    return klom(odd, even, bins=bins)


def summary(values: np.ndarray) -> dict[str, float]:
    """The median and the 95th percentile of per-point values (NaN with none)."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return {"median": math.nan, "p95": math.nan}
    return {"median": float(np.median(values)), "p95": float(np.percentile(values, 95))}
