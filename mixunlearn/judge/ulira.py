"""U-LiRA in oracle mode: per forget example, can an attacker tell an unlearned model from an oracle?

    scores = ulira(unlearned_phi, oracle_phi)      # margins [N, P] each, row m = the pair (unlearned m, oracle m)
    scores.readings()                              # balanced accuracy, AUC, TPR at 1% and 0.1% FPR
    scores.per_example_auc()                       # [P]

Hayes et al., "Inexact Unlearning Needs More Careful Evaluations to Avoid a False Sense of Privacy", arXiv
2403.01218; Google DeepMind's `unlearning_evaluation/metric.py`; Deep Unlearn's `munl/lira/`. For each
forget example x and pair m: one Gaussian is fitted to phi(x) over the unlearned models and one over the
oracles, both leaving pair m out; the attacked unlearned model's phi(x) is scored as a positive and the
held-out oracle's as a negative, by the log likelihood ratio

    s = log N(phi; mu_u, var_u) - log N(phi; mu_o, var_o)          (s > 0: "this is an unlearned model").

Choices, stated:
- Means are plain means of the N - 1 models. Variances: with N < 32, one global variance per group and
  pair (the mean over the examples of each example's sample variance, ddof 1: the pooled within-example
  variance; LiRA's offline `fix_variance`, IAM's); from 32 up, each example's own. A variance is floored at
  VAR_FLOOR so identical margins give a finite score.
- Deep Unlearn keeps the attacked model inside its own fit and reads 0/1 correctness (zero variance, NaN
  scores): here the pair is held out and the statistic is the margin.
- Balanced accuracy is the likelihood-ratio test at equal priors (s > 0), (TPR + TNR) / 2. TPR at a FPR
  is read at the ROC point with the largest FPR not above it (LiRA's convention: the nearest point below).
Ideal: accuracy = AUC = 0.5, TPR at a = a. Not defined on class forgetting (every oracle gets the class
wrong, so per-example membership is ill-posed): KLOM judges there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

GLOBAL_VARIANCE_BELOW = 32   # N below this: one variance per group (too few models for a per-example one)
VAR_FLOOR = 1e-8
FPRS = (0.01, 0.001)         # the TPRs reported, LiRA's low-FPR regime
LOG_2PI = math.log(2.0 * math.pi)


def gaussian_logpdf(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return -0.5 * (LOG_2PI + np.log(var) + (x - mean) ** 2 / var)


def fit(models: np.ndarray, *, global_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean [P] and variance ([P], or a scalar broadcast to [P]) of margins [n, P] over the models."""
    mean = models.mean(axis=0)
    var = models.var(axis=0, ddof=1)
    if global_variance:
        var = np.full_like(mean, var.mean())
    return mean, np.maximum(var, VAR_FLOOR)


@dataclass(frozen=True)
class ULiRAScores:
    positive: np.ndarray   # [N, P]: the log likelihood ratio of unlearned model m at example x
    negative: np.ndarray   # [N, P]: of oracle m at x
    global_variance: bool

    def readings(self) -> dict[str, float]:
        pos, neg = self.positive.ravel(), self.negative.ravel()
        out = {"accuracy": 0.5 * (float(np.mean(pos > 0)) + float(np.mean(neg <= 0))), "auc": auc(pos, neg)}
        for rate in FPRS:
            out[f"tpr_at_{fpr_name(rate)}"] = tpr_at_fpr(pos, neg, rate)
        return out

    def per_example_auc(self) -> np.ndarray:
        """AUC per forget example over its N positives and N negatives, [P]."""
        return column_auc(self.positive, self.negative)


def ulira(unlearned: np.ndarray, oracle: np.ndarray, *, global_variance: bool | None = None) -> ULiRAScores:
    """Scores of every pair m at every example, each from the Gaussians fitted without pair m."""
    u = np.asarray(unlearned, np.float64)
    o = np.asarray(oracle, np.float64)
    assert u.shape == o.shape and u.ndim == 2, "margins are [N, P] for both groups, pair m in row m"
    n = len(u)
    assert n >= 3, "U-LiRA leaves a pair out and needs 2 models a side for a variance: N >= 3"
    if global_variance is None:
        global_variance = n < GLOBAL_VARIANCE_BELOW
    positive, negative = np.empty_like(u), np.empty_like(o)
    for m in range(n):
        mean_u, var_u = fit(np.delete(u, m, axis=0), global_variance=global_variance)
        mean_o, var_o = fit(np.delete(o, m, axis=0), global_variance=global_variance)
        for phi, out in ((u[m], positive), (o[m], negative)):
            out[m] = gaussian_logpdf(phi, mean_u, var_u) - gaussian_logpdf(phi, mean_o, var_o)
    return ULiRAScores(positive, negative, global_variance)


# ---- ROC readings --------------------------------------------------------------------------------------

def fpr_name(rate: float) -> str:
    """0.01 -> "1pct", 0.001 -> "0.1pct" (metric-name safe)."""
    return f"{rate * 100:g}pct"


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > a negative's), ties counting one half (Mann-Whitney U / (n_p n_n))."""
    return float(column_auc(np.reshape(positive, (-1, 1)), np.reshape(negative, (-1, 1)))[0])


def column_auc(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """auc() of each column of positive [n_p, P] against the same column of negative [n_n, P]."""
    n_p, n_n = len(positive), len(negative)
    if n_p == 0 or n_n == 0:
        return np.full(positive.shape[1], math.nan)
    ranks = rankdata(np.concatenate([positive, negative]), axis=0)   # average ranks for ties
    return (ranks[:n_p].sum(axis=0) - n_p * (n_p + 1) / 2.0) / (n_p * n_n)


def roc(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct threshold, from (0, 0) up: `score >= t` is called positive."""
    scores = np.concatenate([positive, negative])
    thresholds = np.unique(scores)[::-1]
    pos, neg = np.sort(positive), np.sort(negative)
    tpr = (len(pos) - np.searchsorted(pos, thresholds, side="left")) / max(len(pos), 1)
    fpr = (len(neg) - np.searchsorted(neg, thresholds, side="left")) / max(len(neg), 1)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


def tpr_at_fpr(positive: np.ndarray, negative: np.ndarray, rate: float) -> float:
    """TPR at the ROC point with the largest FPR <= rate (LiRA reads the nearest point below)."""
    fpr, tpr = roc(np.ravel(positive), np.ravel(negative))
    return float(tpr[fpr <= rate + 1e-12].max())
