"""An audit's figures: U-LiRA's ROC on log-log axes, and KLOM's per-point histograms per group.

    roc_png(path, scores, footer=...)          # one curve per row; the diagonal is chance
    klom_png(path, scores, group="forget", footer=...)

Matplotlib's object API (mixsweep/figures.py `save`, the evidence footer under each).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mixunlearn.judge.audit import NOISE, AuditScores
from mixunlearn.judge.ulira import roc

from .figures import save


def roc_png(path: Path, scores: AuditScores, *, footer: str) -> Path:
    """Each row's U-LiRA ROC (its attacked unlearned models against the held-out oracles) on log-log axes:
    the low-FPR corner, where LiRA's TPR at 1% and 0.1% are read, is visible."""
    fig = Figure(figsize=(5.2, 4.6), layout="constrained")
    ax = fig.subplots()
    floor = 1.0 / max(1, min(s.negative.size for s in scores.ulira_by_row.values()))
    for row, result in scores.ulira_by_row.items():
        fpr, tpr = roc(result.positive.ravel(), result.negative.ravel())
        auc = scores.figures_by_row[row].get("ulira_auc", float("nan"))
        ax.step(np.maximum(fpr, floor / 2), np.maximum(tpr, floor / 2), where="post", label=f"{row} (AUC {auc:.3f})")
    grid = np.logspace(np.log10(floor / 2), 0, 50)
    ax.plot(grid, grid, color="0.5", linestyle="--", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("false positive rate (oracle called unlearned)")
    ax.set_ylabel("true positive rate (unlearned model found)")
    ax.legend(fontsize=7)
    fig.suptitle(f"U-LiRA, oracle mode, N = {scores.models}")
    return save(fig, path, footer, metadata={"Description": "rows: " + ", ".join(scores.ulira_by_row)})


def klom_png(path: Path, scores: AuditScores, *, group: str, footer: str) -> Path:
    """Per-point KLOM of every row in `group`, and the noise floor's (two halves of the oracles)."""
    fig = Figure(figsize=(5.6, 4.0), layout="constrained")
    ax = fig.subplots()
    rows = [row for row in scores.klom_by_row if group in scores.klom_by_row[row]]
    top = max((float(np.max(scores.klom_by_row[r][group])) for r in rows), default=1.0)
    bins = np.linspace(0.0, max(top, 1e-3), 30)
    for row in rows:
        values = scores.klom_by_row[row][group]
        style = {"color": "0.4", "linestyle": "--"} if row == NOISE else {}
        ax.hist(values, bins=bins, histtype="step", linewidth=1.4,
                label=f"{'noise floor' if row == NOISE else row} (median {np.median(values):.3f})", **style)
    ax.set_xlabel("KLOM per point: KL(oracles || unlearned) of the true-class margin")
    ax.set_ylabel("points")
    ax.legend(fontsize=7)
    fig.suptitle(f"KLOM, {group} points ({len(scores.klom_by_row[rows[0]][group]) if rows else 0}), "
                 f"{scores.bins} bins, N = {scores.models}")
    return save(fig, path, footer, metadata={"Description": f"group: {group}; rows: " + ", ".join(rows)})
