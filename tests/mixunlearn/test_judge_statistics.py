"""The judge's statistics against plain re-implementations on synthetic Gaussian margins (to 1e-9), and
finite at margins of ±50 (EVALUATION.md; mixunlearn/judge/)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import entropy, norm
from sklearn.metrics import roc_auc_score

from mixunlearn.judge.intervals import Interval, confident_ranks, mean_interval, model_bootstrap
from mixunlearn.judge.klom import bin_count, klom, noise_floor, summary
from mixunlearn.judge.margins import true_class_margin
from mixunlearn.judge.ulira import FPRS, fpr_name, tpr_at_fpr, ulira

TOL = 1e-9


def gaussian_pools(n_models=16, points=40, shift=1.0, seed=0):
    """Per point a mean; the 'unlearned' margins sit `shift` above the oracles', both with unit noise."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(0.0, 3.0, points)
    unlearned = centre + shift + rng.normal(0.0, 1.0, (n_models, points))
    oracle = centre + rng.normal(0.0, 1.0, (n_models, points))
    return unlearned, oracle


# ---- the margin ----------------------------------------------------------------------------------------

def plain_margin(row, label):
    others = [z for j, z in enumerate(row) if j != label]
    top = max(others)
    return row[label] - (top + math.log(sum(math.exp(z - top) for z in others)))


def test_margin_matches_a_plain_loop_and_never_saturates():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, (50, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 50)
    phi = true_class_margin(logits, labels)
    expected = [plain_margin([float(z) for z in row], int(y)) for row, y in zip(logits, labels)]
    np.testing.assert_allclose(phi, expected, rtol=0, atol=TOL)
    # Logits far apart: the margin is ±50 exactly, where clipped float32 probabilities stop near ±13.8.
    far = np.array([[50.0, 0.0], [0.0, 50.0]], np.float32)
    np.testing.assert_array_equal(true_class_margin(far, np.array([0, 0])), [50.0, -50.0])
    # A stack of models [M, n, K] is the same per model.
    stacked = true_class_margin(np.stack([logits, logits[::-1]]), labels)
    np.testing.assert_allclose(stacked[1], true_class_margin(logits[::-1], labels), rtol=0, atol=0)


# ---- KLOM ----------------------------------------------------------------------------------------------

def plain_klom(unlearned, oracle, bins):
    """data-unlearning-bench's compute_binned_KL_div, read as KL(oracle || unlearned), with np.histogram."""
    out = []
    for x in range(unlearned.shape[1]):
        u, o = np.clip(unlearned[:, x], -100, 100), np.clip(oracle[:, x], -100, 100)
        lo, hi = min(u.min(), o.min()), max(u.max(), o.max())
        if lo >= hi:
            hi = lo + 1
        p = np.histogram(o, bins=bins, range=(lo, hi))[0] / len(o)
        q = np.histogram(u, bins=bins, range=(lo, hi))[0] / len(u)
        q = np.where(p > 0, np.maximum(q, 1e-5), q)
        out.append(entropy(p, q))
    return np.array(out)


@pytest.mark.parametrize("n_models", [8, 16, 33])
def test_klom_matches_plain_binning_in_the_stated_direction(n_models):
    unlearned, oracle = gaussian_pools(n_models=n_models)
    bins = bin_count(n_models)
    assert bins == max(2, round(math.sqrt(n_models)))
    got = klom(unlearned, oracle)
    np.testing.assert_allclose(got, plain_klom(unlearned, oracle, bins), rtol=0, atol=TOL)
    # The direction: KL(oracle || unlearned), not the reverse (the two differ on these samples).
    reverse = plain_klom(oracle, unlearned, bins)
    assert np.max(np.abs(got - reverse)) > 1e-3
    # Shifted margins are further from the oracles than the oracles' own halves are from each other.
    assert summary(got)["median"] > summary(noise_floor(oracle))["median"]


def test_klom_noise_floor_is_the_split_half_klom():
    _, oracle = gaussian_pools(n_models=16)
    np.testing.assert_allclose(noise_floor(oracle), plain_klom(oracle[1::2], oracle[0::2], bin_count(8)),
                               rtol=0, atol=TOL)


def test_klom_values_on_a_bin_edge_and_at_the_maximum_are_counted():
    # Every value on an edge (0, 0.5, 1 with 2 bins): np.histogram puts the maximum in the last bin.
    oracle = np.array([[0.0], [0.5], [1.0], [1.0]])
    unlearned = np.array([[0.0], [0.0], [0.5], [1.0]])
    np.testing.assert_allclose(klom(unlearned, oracle), plain_klom(unlearned, oracle, 2), rtol=0, atol=TOL)


# ---- U-LiRA --------------------------------------------------------------------------------------------

def plain_ulira(unlearned, oracle, global_variance):
    n, points = unlearned.shape
    pos, neg = np.zeros((n, points)), np.zeros((n, points))
    for m in range(n):
        keep = [j for j in range(n) if j != m]
        u, o = unlearned[keep], oracle[keep]
        if global_variance:
            var_u = np.mean([np.var(u[:, x], ddof=1) for x in range(points)])
            var_o = np.mean([np.var(o[:, x], ddof=1) for x in range(points)])
        for x in range(points):
            vu = var_u if global_variance else np.var(u[:, x], ddof=1)
            vo = var_o if global_variance else np.var(o[:, x], ddof=1)
            mu, mo = np.mean(u[:, x]), np.mean(o[:, x])
            for phi, out in ((unlearned[m, x], pos), (oracle[m, x], neg)):
                out[m, x] = (norm.logpdf(phi, mu, math.sqrt(vu)) - norm.logpdf(phi, mo, math.sqrt(vo)))
    return pos, neg


def plain_tpr_at(pos, neg, rate):
    best = 0.0
    for t in sorted(set(pos) | set(neg)) + [math.inf]:
        fpr = sum(s >= t for s in neg) / len(neg)
        if fpr <= rate:
            best = max(best, sum(s >= t for s in pos) / len(pos))
    return best


def plain_auc(pos, neg):
    return sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))


@pytest.mark.parametrize("global_variance", [True, False])
def test_ulira_fits_ratio_and_roc_match_plain_loops(global_variance):
    unlearned, oracle = gaussian_pools(n_models=10, points=12, shift=0.7)
    scores = ulira(unlearned, oracle, global_variance=global_variance)
    pos, neg = plain_ulira(unlearned, oracle, global_variance)
    np.testing.assert_allclose(scores.positive, pos, rtol=0, atol=TOL)
    np.testing.assert_allclose(scores.negative, neg, rtol=0, atol=TOL)
    readings = scores.readings()
    p, q = pos.ravel(), neg.ravel()
    assert abs(readings["auc"] - plain_auc(p, q)) < TOL
    assert abs(readings["auc"] - roc_auc_score(np.r_[np.ones(p.size), np.zeros(q.size)], np.r_[p, q])) < TOL
    assert abs(readings["accuracy"] - 0.5 * (np.mean(p > 0) + np.mean(q <= 0))) < TOL
    for rate in FPRS:
        assert abs(readings[f"tpr_at_{fpr_name(rate)}"] - plain_tpr_at(list(p), list(q), rate)) < TOL
    for rate in (0.05, 0.2):
        assert abs(tpr_at_fpr(p, q, rate) - plain_tpr_at(list(p), list(q), rate)) < TOL
    per_example = scores.per_example_auc()
    np.testing.assert_allclose(per_example, [plain_auc(pos[:, x], neg[:, x]) for x in range(pos.shape[1])],
                               rtol=0, atol=TOL)
    # The shifted group is told apart; the default below 32 models is the global variance.
    assert readings["auc"] > 0.6
    assert ulira(unlearned, oracle).global_variance is True


def test_ulira_is_at_chance_when_both_groups_are_one_distribution():
    unlearned, oracle = gaussian_pools(n_models=16, points=200, shift=0.0, seed=3)
    readings = ulira(unlearned, oracle).readings()
    assert abs(readings["auc"] - 0.5) < 0.05 and abs(readings["accuracy"] - 0.5) < 0.05


def test_results_are_finite_at_margins_of_plus_minus_50():
    rng = np.random.default_rng(4)
    unlearned = 50.0 + 1e-3 * rng.normal(size=(8, 20))
    oracle = -50.0 + 1e-3 * rng.normal(size=(8, 20))
    identical = np.full((8, 20), 50.0)   # no spread at all: the variance floor keeps scores finite
    for u, o in ((unlearned, oracle), (oracle, unlearned), (identical, identical), (identical, oracle)):
        assert np.isfinite(klom(u, o)).all()
        scores = ulira(u, o)
        assert np.isfinite(scores.positive).all() and np.isfinite(scores.negative).all()
        assert all(math.isfinite(v) for v in scores.readings().values())
        assert np.isfinite(scores.per_example_auc()).all()
    assert ulira(unlearned, oracle).readings()["auc"] == 1.0
    assert np.all(klom(identical, identical) == 0.0)


# ---- intervals -----------------------------------------------------------------------------------------

def test_mean_interval_is_a_seeded_percentile_bootstrap():
    values = [1.0, 2.0, 4.0, 3.5, 2.5]
    cell = mean_interval(values)
    assert cell.mean == pytest.approx(2.6) and cell.low < cell.mean < cell.high and cell.n == 5
    assert mean_interval(values) == cell                                   # one set of numbers, one interval
    assert not mean_interval([1.0]).known and mean_interval([2.0, 2.0]) == Interval(2.0, 2.0, 2.0, 2)
    assert math.isnan(mean_interval([math.nan]).mean)
    wide, narrow = mean_interval([0.0, 10.0, 5.0]), mean_interval(list(np.linspace(4.9, 5.1, 30)))
    assert wide.high - wide.low > narrow.high - narrow.low


def test_overlapping_intervals_share_a_rank():
    cells = {"a": Interval(1.0, 0.5, 1.6, 3), "b": Interval(1.5, 1.2, 2.0, 3), "c": Interval(4.0, 3.0, 5.0, 3),
             "d": Interval(0.9, math.nan, math.nan, 1)}
    ranks = confident_ranks(cells)
    assert ranks == {"a": 1, "b": 1, "c": 3, "d": 1}
    assert confident_ranks(cells, lower_is_better=False)["c"] == 1


def test_model_bootstrap_spans_the_statistic():
    unlearned, oracle = gaussian_pools(n_models=8, points=30, shift=2.0)
    value = summary(klom(unlearned, oracle))["median"]
    low, high = model_bootstrap(lambda u, o: summary(klom(u, o))["median"], unlearned, oracle, resamples=100)
    assert low <= value <= high
