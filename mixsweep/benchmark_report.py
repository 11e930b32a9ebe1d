"""The benchmark's figures: quality per method, its cost, and whether the equal trial budget sufficed.

    paths = write_figures(folder, table, trials, objective="avg_gap", mode="min", footer=footer)

- `avg_gap.png`: each method's mean Avg. Gap over its seeds with its 95% interval as error bars, best on top,
  f_D's gap dashed (what not unlearning at all scores; Retrain's is 0).
- `cost_quality.png`: RTE (unlearning seconds, log scale) against Avg. Gap, one labelled point per
  method with its 95% intervals both ways; Retrain's training time dashed. Down and left is better.
- `budget.png`: each method's best-so-far sweep objective over its completed trials against its trial
  number (trials in start order; one fidelity: a trial ASHA stopped, diverged or failed has no final
  value and is skipped). A curve still falling at the last trial says the budget was too small.

Matplotlib's object API through `figures.save` (no pyplot state), the evidence footer under each. Each
PNG also names its methods in its "Description" text chunk.
"""
from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .benchmark_table import BenchmarkTable, BenchmarkRow
from .figures import BEST, OTHER, best_so_far, save
from .tables import Stat


def write_figures(folder: Path, table: BenchmarkTable, trials: dict[str, list[float]], *, objective: str,
                  mode: str, footer: str = "") -> list[Path]:
    """The three PNGs in `folder` (created); `trials[title]`: the objective of that method's sweep trials in
    start order; `objective`/`mode`: the sweep's objective metric and "min" or "max"."""
    assert mode in ("min", "max"), mode
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [avg_gap_bars(folder / "avg_gap.png", table, footer=footer),
            cost_quality(folder / "cost_quality.png", table, footer=footer),
            budget(folder / "budget.png", trials, objective=objective, mode=mode, footer=footer)]


def described(labels: list[str]) -> dict[str, str]:
    return {"Description": "methods: " + ", ".join(labels)}


def finite_or_zero(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def bar(stat: Stat) -> tuple[float, float]:
    """The (below, above) error bar of a Stat's 95% interval around its mean; 0 where not known."""
    if not stat.interval.known:
        return 0.0, 0.0
    return max(stat.mean - stat.low, 0.0), max(stat.high - stat.mean, 0.0)


def bars(stats: list[Stat]) -> list[list[float]]:
    below_above = [bar(s) for s in stats]
    return [[b for b, _ in below_above], [a for _, a in below_above]]


def label_of(row: BenchmarkRow) -> str:
    return row.label if not row.excluded else f"{row.label} ({row.seed_count} seeds)"


def avg_gap_bars(path: Path, table: BenchmarkTable, *, footer: str) -> Path:
    methods = table.methods[::-1]   # barh draws bottom-up: the best (rank 1) on top
    fig = Figure(figsize=(6.0, 0.4 * len(methods) + 1.6), layout="constrained")
    ax = fig.subplots()
    ys = list(range(len(methods)))
    ax.barh(ys, [finite_or_zero(r.stats["avg_gap"].mean) for r in methods],
            xerr=bars([r.stats["avg_gap"] for r in methods]), capsize=3, color=OTHER)
    original = table.original_row.stats["avg_gap"].mean
    if math.isfinite(original):
        ax.axvline(original, color=BEST, linestyle="--", linewidth=1, label="f_D (no unlearning)")
        ax.legend(fontsize=7)
    ax.set_yticks(ys, [label_of(r) for r in methods], fontsize=8)
    ax.set_xlabel("Avg. Gap to Retrain (mean and 95% interval over seeds; lower is better)")
    fig.suptitle("Benchmark: Avg. Gap per method, ranked")
    return save(fig, path, footer, metadata=described([r.label for r in table.methods]))


def cost_quality(path: Path, table: BenchmarkTable, *, footer: str) -> Path:
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.subplots()
    drawn = [r for r in table.methods if r.stats["unlearn_seconds"].mean > 0 and math.isfinite(r.stats["avg_gap"].mean)]
    for row in drawn:
        seconds, gap = row.stats["unlearn_seconds"], row.stats["avg_gap"]
        ax.errorbar(seconds.mean, gap.mean, xerr=bars([seconds]), yerr=bars([gap]),
                    fmt="o", color=OTHER, capsize=3, markersize=5)
        ax.annotate(label_of(row), (seconds.mean, gap.mean), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if table.retrain_seconds > 0:
        ax.axvline(table.retrain_seconds, color=BEST, linestyle="--", linewidth=1,
                   label=f"Retrain's training ({table.retrain_seconds:.0f} s)")
        ax.legend(fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("RTE: unlearning wall time (s, log scale)")
    ax.set_ylabel("Avg. Gap to Retrain (lower is better)")
    fig.suptitle("Benchmark: cost against quality")
    return save(fig, path, footer, metadata=described([r.label for r in drawn]))


LINE_STYLES = ("-", "--", ":")


def budget(path: Path, trials: dict[str, list[float]], *, objective: str, mode: str, footer: str) -> Path:
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    for index, (title, values) in enumerate(trials.items()):
        numbers = list(range(1, len(values) + 1))
        # The colour cycle has ten colours: past the tenth method the line style tells them apart.
        line = ax.step(numbers, best_so_far(values, mode), where="post", label=title,
                       linestyle=LINE_STYLES[index // 10 % len(LINE_STYLES)])[0]
        ax.scatter(numbers, values, s=10, color=line.get_color(), alpha=0.35)   # NaN points are not drawn
    ax.set_xlabel("trial number (start order)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"best {objective} of the completed trials so far ({mode})")
    ax.legend(fontsize=7, ncols=2)
    fig.suptitle("Benchmark: did the trial budget suffice? (flat at the end = yes; completed trials only)")
    return save(fig, path, footer, metadata=described(list(trials)))
