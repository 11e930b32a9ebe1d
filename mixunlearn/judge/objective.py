"""`oracle_nll`: a single trial's model judged per example against the pool's oracles, as a sweep objective.

    gaussians = oracle_gaussians(oracle_phi, points)   # [N, n_train + n_test] margins of the N oracles
    gaussians.nll(trial_phi)                            # the trial's margins [n_train + n_test] -> float

A trial has one unlearned model, so KLOM (a distance between two distributions of models) cannot be its
objective; its margin at each point can still be compared with the N oracles' there. Per point x, the
oracles' margins give a Gaussian N(mu(x), var(x)) (var: the group's pooled within-point variance below
N = 32, U-LiRA's rule; each point's own from 32 up; floored like U-LiRA's); the objective is the negative
log-likelihood of the trial's phi(x),

    0.5 log(2 pi var) + (phi(x) - mu(x))^2 / (2 var),

averaged over the points of each group (every forget point, a sample of retained and of test points:
mixunlearn/judge/audit.py `groups`), then over the three groups equally, so the forget set weighs as much
as the rest. Lower is better: 0.5 log(2 pi e var) on average for a model drawn like the oracles. It reads the
trial's margins and the pool's stored ones only: no attacker, no draw, one model one number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .ulira import GLOBAL_VARIANCE_BELOW, VAR_FLOOR

LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class OracleGaussians:
    groups: dict[str, np.ndarray]   # group -> positions in a margin vector
    mean: dict[str, np.ndarray]     # group -> the oracles' mean margin per point
    var: dict[str, np.ndarray]      # group -> the variance per point (one value repeated below N = 32)
    models: int

    def nll_by_group(self, phi: np.ndarray) -> dict[str, float]:
        phi = np.asarray(phi, np.float64)
        return {g: float(np.mean(0.5 * (LOG_2PI + np.log(self.var[g]) + (phi[idx] - self.mean[g]) ** 2 / self.var[g])))
                for g, idx in self.groups.items()}

    def nll(self, phi: np.ndarray) -> float:
        """The objective: the groups' mean NLLs, averaged."""
        return float(np.mean(list(self.nll_by_group(phi).values())))


def oracle_gaussians(oracles: np.ndarray, points: dict[str, np.ndarray]) -> OracleGaussians:
    oracles = np.asarray(oracles, np.float64)
    n = len(oracles)
    assert n >= 2, "a variance needs at least 2 oracles"
    mean, var = {}, {}
    for group, idx in points.items():
        values = oracles[:, idx]
        mean[group] = values.mean(axis=0)
        per_point = values.var(axis=0, ddof=1)
        var[group] = np.maximum(np.full_like(per_point, per_point.mean()) if n < GLOBAL_VARIANCE_BELOW
                                else per_point, VAR_FLOOR)
    return OracleGaussians({g: np.asarray(i) for g, i in points.items()}, mean, var, n)
