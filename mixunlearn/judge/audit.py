"""Scoring an audit: each row (a method, doing nothing, exact retraining) against the pool's oracles.

    points = groups(split, n_test=len(data.test_labels), seed=cfg.eval_seed)
    scores = score({"ga": ga_phi, "f_D": originals_phi, "exact_retraining": heldout_phi}, oracles_phi, points,
                   ulira_applicable=not split.forget_classes)
    scores.figures()            # {"ga/klom_forget_median": ..., "noise/klom_forget_median": ..., ...}
    scores.per_example()        # a pyarrow Table: one row per (row, group, point)

Margins are [N, n_train + n_test] per row (model m of a row is paired with oracle m); `groups` picks the
points: every forget point, and a seeded sample of retained and of test points (SAMPLE each).

Per row and group: KLOM's median and 95th percentile (mixunlearn/judge/klom.py), the median's 95% interval
from resampling the points (intervals.median_interval). Not from resampling the models: a resample repeats
margins, which makes binned histograms spikier and biases KL upward (measured on a Fashion-MNIST pool of 16:
the model-bootstrap interval of exact retraining's median missed its own estimate); the pool's finite size
is what the noise floor measures. One bin count for the whole audit, the
noise floor's (bin_count(N // 2)): KLOM depends on its bins, and a figure is only comparable with the
floor when both are binned alike. The noise floor: the same between the oracles' two halves, per group.
U-LiRA (mixunlearn/judge/ulira.py) on the forget points of a random or data-level task: balanced
accuracy, AUC with its 95% interval from resampling the forget examples, TPR at 1% and 0.1% FPR, and the
per-example AUC's median and 5th/95th percentiles. On class forgetting it is not applicable (NOT_APPLICABLE).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .intervals import median_interval
from .klom import bin_count, halves, klom, summary
from .ulira import ULiRAScores, auc, ulira

SAMPLE = 500            # retained and test points sampled per audit (every forget point is scored)
GROUPS = ("forget", "retain", "test")
EXAMPLE_RESAMPLES = 1000
NOISE = "noise"         # the noise floor's figures: f"{NOISE}/klom_<group>_median", ...
NOT_APPLICABLE = ("U-LiRA is not applicable on class forgetting: every oracle gets the forgotten class wrong, so "
                  "per-example membership is ill-posed; KLOM judges there.")


def groups(split, *, n_test: int, sample: int = SAMPLE, seed: int = 0) -> dict[str, np.ndarray]:
    """Positions in a margin vector (training points first, then test points): every forget point, and
    `sample` retained and test points drawn with numpy's Generator(seed) (the evaluation seed)."""
    n_train = len(split.train_labels)
    rng = np.random.default_rng(seed)
    retain = split.retain_idx.cpu().numpy()
    return {"forget": split.forget_idx.cpu().numpy(),
            "retain": np.sort(rng.choice(retain, min(sample, len(retain)), replace=False)),
            "test": n_train + np.sort(rng.choice(n_test, min(sample, n_test), replace=False))}


@dataclass
class AuditScores:
    figures_by_row: dict[str, dict[str, float]]     # row -> figure -> value; NOISE's are the noise floor's
    per_example_columns: dict[str, list]            # the Parquet's columns
    klom_by_row: dict[str, dict[str, np.ndarray]]   # row (NOISE too) -> group -> per-point KLOM: histograms
    ulira_by_row: dict[str, ULiRAScores] = field(default_factory=dict)   # ROC curves
    bins: int = 0
    models: int = 0
    ulira_applicable: bool = True
    notes: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, float]:
        """Every figure as one flat dict, "<row>/<figure>" (MLflow metric names)."""
        return {f"{row}/{name}": value for row, figures in self.figures_by_row.items()
                for name, value in figures.items()}

    def per_example(self):
        import pyarrow as pa

        return pa.table(self.per_example_columns)


def score(rows: dict[str, np.ndarray], oracles: np.ndarray, points: dict[str, np.ndarray], *,
          ulira_applicable: bool, metrics: tuple[str, ...] = ("klom", "ulira"), seed: int = 0) -> AuditScores:
    """Score every row's margins [N, n_points] against the oracles' [N, n_points] at `points`."""
    n = len(oracles)
    assert all(len(u) == n for u in rows.values()), "every row pairs its model m with oracle m: N models each"
    bins = bin_count(n // 2)
    out = AuditScores({}, {name: [] for name in COLUMNS}, {}, bins=bins, models=n,
                      ulira_applicable=ulira_applicable)
    if "klom" in metrics:
        out.figures_by_row[NOISE], out.klom_by_row[NOISE] = {}, {}
        even, odd = halves(oracles)
        for group, idx in points.items():
            values = klom(odd[:, idx], even[:, idx], bins=bins)
            out.klom_by_row[NOISE][group] = values
            out.figures_by_row[NOISE].update(klom_figures(group, values, seed=seed))
    for row, unlearned in rows.items():
        figures: dict[str, float] = {}
        per_point: dict[str, np.ndarray] = {}
        scores = None
        if "klom" in metrics:
            for group, idx in points.items():
                per_point[group] = klom(unlearned[:, idx], oracles[:, idx], bins=bins)
                figures.update(klom_figures(group, per_point[group], seed=seed))
            out.klom_by_row[row] = per_point
        if "ulira" in metrics:
            if ulira_applicable:
                forget = points["forget"]
                scores = ulira(unlearned[:, forget], oracles[:, forget])
                out.ulira_by_row[row] = scores
                figures.update(ulira_figures(scores, seed=seed))
            else:
                figures.update(dict.fromkeys(ULIRA_FIGURES, math.nan))
        out.figures_by_row[row] = figures
        add_rows(out.per_example_columns, row, unlearned, oracles, points, per_point, scores,
                 out.klom_by_row.get(NOISE, {}))
    if "ulira" in metrics and not ulira_applicable:
        out.notes.append(NOT_APPLICABLE)
    return out


def klom_figures(group: str, values: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    stats = summary(values)
    interval = median_interval(values, seed=seed)
    return {f"klom_{group}_median": stats["median"], f"klom_{group}_p95": stats["p95"],
            f"klom_{group}_median_low": interval[0], f"klom_{group}_median_high": interval[1]}


ULIRA_FIGURES = ("ulira_accuracy", "ulira_auc", "ulira_auc_low", "ulira_auc_high", "ulira_tpr_at_1pct",
                 "ulira_tpr_at_0.1pct", "ulira_example_auc_median", "ulira_example_auc_p05",
                 "ulira_example_auc_p95")


def ulira_figures(scores: ULiRAScores, *, seed: int = 0, resamples: int = EXAMPLE_RESAMPLES) -> dict[str, float]:
    """U-LiRA's readings; the AUC's 95% interval from resampling the forget examples (columns)."""
    readings = scores.readings()
    rng = np.random.default_rng(seed)
    points = scores.positive.shape[1]
    drawn = []
    for _ in range(resamples):
        columns = rng.integers(0, points, points)
        drawn.append(auc(scores.positive[:, columns].ravel(), scores.negative[:, columns].ravel()))
    per_example = scores.per_example_auc()
    return {"ulira_accuracy": readings["accuracy"], "ulira_auc": readings["auc"],
            "ulira_auc_low": float(np.percentile(drawn, 2.5)), "ulira_auc_high": float(np.percentile(drawn, 97.5)),
            "ulira_tpr_at_1pct": readings["tpr_at_1pct"], "ulira_tpr_at_0.1pct": readings["tpr_at_0.1pct"],
            "ulira_example_auc_median": float(np.median(per_example)),
            "ulira_example_auc_p05": float(np.percentile(per_example, 5)),
            "ulira_example_auc_p95": float(np.percentile(per_example, 95))}


# ---- the per-example table -----------------------------------------------------------------------------

COLUMNS = ("row", "group", "point", "phi_mean", "phi_std", "oracle_phi_mean", "oracle_phi_std", "klom",
           "noise_klom", "ulira_auc", "ulira_score_unlearned", "ulira_score_oracle")


def add_rows(columns: dict[str, list], row: str, unlearned: np.ndarray, oracles: np.ndarray,
             points: dict[str, np.ndarray], klom_values: dict[str, np.ndarray], scores: ULiRAScores | None,
             noise: dict[str, np.ndarray]) -> None:
    """One Parquet row per (row, group, point): the margins' statistics, KLOM, and on forget points U-LiRA's
    per-example AUC and mean scores (NaN where not computed)."""
    for group, idx in points.items():
        k = len(idx)
        nan = np.full(k, math.nan)
        columns["row"] += [row] * k
        columns["group"] += [group] * k
        columns["point"] += idx.tolist()
        columns["phi_mean"] += unlearned[:, idx].mean(axis=0).tolist()
        columns["phi_std"] += unlearned[:, idx].std(axis=0, ddof=1).tolist()
        columns["oracle_phi_mean"] += oracles[:, idx].mean(axis=0).tolist()
        columns["oracle_phi_std"] += oracles[:, idx].std(axis=0, ddof=1).tolist()
        columns["klom"] += klom_values.get(group, nan).tolist()
        columns["noise_klom"] += noise.get(group, nan).tolist()
        forget = group == "forget" and scores is not None
        columns["ulira_auc"] += (scores.per_example_auc() if forget else nan).tolist()
        columns["ulira_score_unlearned"] += (scores.positive.mean(axis=0) if forget else nan).tolist()
        columns["ulira_score_oracle"] += (scores.negative.mean(axis=0) if forget else nan).tolist()
