"""The report's PNG figures, each with the evidence footer (sweep, dataset, task, hardware, versions).

Matplotlib's object API with the Agg canvas (`matplotlib.figure.Figure`, never pyplot): no display, no
global figure state, safe in a driver that also runs Ray. Every function takes plain numbers and a
footer, writes one PNG and returns its path.
"""
from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 120
FOOTER_SIZE = 6.5     # points: readable when zoomed, small enough not to compete with the data
BEST = "tab:red"
OTHER = "tab:blue"


def save(fig: Figure, path: Path, footer: str, *, metadata: dict[str, str] | None = None) -> Path:
    """Write `fig` with the footer under it (bbox "tight" grows the canvas to include the footer);
    `metadata`: PNG text chunks (e.g. {"Description": ...}), readable without looking at the picture."""
    fig.text(0.0, 0.0, footer, fontsize=FOOTER_SIZE, color="0.3", ha="left", va="top", family="monospace")
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.15, metadata=metadata)
    return path


def _grid(panels: int, *, width: float = 4.2, height: float = 3.2) -> tuple[Figure, list]:
    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    fig = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel().tolist()
    for unused in axes[panels:]:
        unused.set_visible(False)
    return fig, axes[:panels]


def best_so_far(values: list[float], mode: str) -> list[float]:
    """The running best of the finite values (NaN until the first one)."""
    best, out = math.nan, []
    for value in values:
        if math.isfinite(value):
            best = value if math.isnan(best) else (min(best, value) if mode == "min" else max(best, value))
        out.append(best)
    return out


def history(path: Path, *, numbers: list[int], values: list[list[float]], objectives: list[list[str]],
            title: str, footer: str, stopped: list[tuple[int, list[float]]] = ()) -> Path:
    """One panel per objective: each completed trial's value by trial number and their best so far; the
    trials ASHA stopped (`stopped`: number, values at the stop) faded, outside the best so far."""
    fig, axes = _grid(len(objectives))
    for i, (ax, (metric, mode)) in enumerate(zip(axes, objectives)):
        ys = [v[i] for v in values]
        if stopped:
            ax.scatter([n for n, _ in stopped], [v[i] for _, v in stopped], s=14, facecolors="none",
                       edgecolors="0.6", label="stopped early (value at its stop; not compared)")
        ax.scatter(numbers, ys, s=18, color=OTHER, label="completed trial")
        ax.step(numbers, best_so_far(ys, mode), where="post", color=BEST, label=f"best completed so far ({mode})")
        ax.set_xlabel("trial number")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return save(fig, path, footer)


def pareto(path: Path, *, points: list[tuple[float, float]], front: list[tuple[float, float]],
           axes_names: tuple[str, str], title: str, footer: str) -> Path:
    """The trials on the first two objectives, the Pareto front highlighted and joined."""
    fig = Figure(figsize=(5.2, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=18, color=OTHER, label="trial")
    ordered = sorted(front)
    ax.plot([p[0] for p in ordered], [p[1] for p in ordered], "o-", color=BEST, label="Pareto front")
    ax.set_xlabel(axes_names[0])
    ax.set_ylabel(axes_names[1])
    ax.legend(fontsize=7)
    fig.suptitle(title)
    return save(fig, path, footer)


def importances(path: Path, *, per_objective: dict[str, dict[str, float]], title: str, footer: str) -> Path:
    """One horizontal bar chart per objective: each searched parameter's share of the variance."""
    fig, axes = _grid(len(per_objective))
    for ax, (metric, scores) in zip(axes, per_objective.items()):
        names = list(scores)[::-1]   # the most important on top
        ax.barh(names, [scores[n] for n in names], color=OTHER)
        ax.set_xlabel(f"importance for {metric}")
        ax.set_xlim(0, max(1e-9, max(scores.values())) * 1.1)
    fig.suptitle(title)
    return save(fig, path, footer)


def curves(path: Path, *, series: dict[str, dict[str, tuple[list[float], list[float]]]], objectives: list[str],
           title: str, footer: str) -> Path:
    """One panel per objective: its value after each epoch, one line per trial (`series[trial][metric]`)."""
    fig, axes = _grid(len(objectives))
    for ax, metric in zip(axes, objectives):
        for label, by_metric in series.items():
            if metric in by_metric:
                epochs, values = by_metric[metric]
                ax.plot(epochs, values, "o-", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.legend(fontsize=6)
    fig.suptitle(title)
    return save(fig, path, footer)


def ablation_bars(path: Path, *, variants: list[str], metrics: list[str], means: dict[str, dict[str, float]],
                  stds: dict[str, dict[str, float]], retrain: dict[str, float], title: str, footer: str) -> Path:
    """One panel per metric: a bar per variant (plan order) with ± std error bars; Retrain as a dashed line."""
    fig, axes = _grid(len(metrics), width=max(4.2, 0.45 * len(variants) + 1.5), height=3.4)
    xs = list(range(len(variants)))
    for ax, metric in zip(axes, metrics):
        heights = [means[v][metric] for v in variants]
        errors = [0.0 if math.isnan(stds[v][metric]) else stds[v][metric] for v in variants]
        ax.bar(xs, [0.0 if math.isnan(h) else h for h in heights], yerr=errors, capsize=3, color=OTHER)
        if not math.isnan(retrain.get(metric, math.nan)):
            ax.axhline(retrain[metric], color=BEST, linestyle="--", linewidth=1, label="Retrain")
            ax.legend(fontsize=7)
        ax.set_xticks(xs, variants, rotation=60, ha="right", fontsize=7)
        ax.set_title(metric, fontsize=9)
    fig.suptitle(title)
    return save(fig, path, footer)


def mask_curves(path: Path, *, series: dict[str, dict[str, tuple[list[float], list[float]]]], title: str,
                footer: str) -> Path:
    """G's mask against the epoch, one line per trial (or variant): its mean forget share, with the even
    blend (0.5) it starts at dashed, and its mean within-image std (0 = a constant blend)."""
    panels = [("mask_forget_share", "mean forget share M[:,0]"), ("mask_spatial_std", "within-image std of M[:,0]")]
    fig, axes = _grid(len(panels))
    for ax, (metric, label) in zip(axes, panels):
        for name, by_metric in series.items():
            if metric in by_metric:
                epochs, values = by_metric[metric]
                ax.plot(epochs, values, "o-", markersize=3, label=name)
        if metric == "mask_forget_share":
            ax.axhline(0.5, color="0.5", linestyle="--", linewidth=1, label="even blend")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.legend(fontsize=6)
    fig.suptitle(title)
    return save(fig, path, footer)
