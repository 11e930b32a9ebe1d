"""Measurements -> tables: the ablation table (mean [95% interval], Δ vs full, Δ vs Retrain) and the paper's table.

Pure functions of numbers already collected (no MLflow, no Ray), so they are tested on hand-made values
and rendered the same way by `ablate`, `report` and `compare`.

    table = ablation_table(measures, variants=["full", "no_real"], metrics=["test_r", "asr"])
    print(table.markdown())          # three Markdown tables: values, Δ vs full, Δ vs Retrain
    path.write_text(table.csv_text())

    paper = paper_table(task_kind="class", original=f_d_row, retrain=retrain_row, methods={"quick": row})
    print(paper.markdown())          # bold = closest to Retrain with confidence (intervals separate)

Statistics (`Stat`): over the seeds a variant finished, the mean, the *sample* standard deviation (n − 1,
`statistics.stdev`; NaN with one seed) and the mean's 95% percentile-bootstrap interval
(mixunlearn/judge/intervals.py). A cell shows "mean [low, high]"; with one value the interval is unknown
("[–]"), except for a single fixed model such as f_D's or Retrain's, whose number is a point. A difference,
a rank or a bold cell is claimed only where intervals separate; where they overlap the table says so.
"""
from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from typing import NamedTuple

from mixunlearn.judge.intervals import Interval, mean_interval

# Metrics with no meaningful Retrain value: Retrain's avg_gap is 0 by definition (its distance to
# itself), and the unlearning wall time does not exist for a model trained from scratch.
NO_RETRAIN_DELTA = frozenset({"avg_gap", "unlearn_seconds"})
RETRAIN = "Retrain"
ORIGINAL = "f_D"
NA = "–"


class RunMeasure(NamedTuple):
    """One finished run of an ablation: its variant and seed, the method's final metrics, and the metrics
    of the Retrain model it was measured against (same split, same evaluation seed)."""
    variant: str
    seed: int
    metrics: dict[str, float]
    retrain: dict[str, float]


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float     # sample std (n − 1); NaN when n < 2
    n: int
    low: float = math.nan    # the mean's 95% bootstrap interval; NaN = not known (n < 2)
    high: float = math.nan

    @staticmethod
    def of(values: list[float]) -> "Stat":
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            return Stat(math.nan, math.nan, 0)
        interval = mean_interval(finite)
        return Stat(statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else math.nan,
                    len(finite), interval.low, interval.high)

    @staticmethod
    def point(value: float) -> "Stat":
        """One fixed model's number (f_D's, Retrain's): the quantity itself, an interval of width 0."""
        if not math.isfinite(value):
            return Stat(math.nan, math.nan, 0)
        return Stat(value, math.nan, 1, value, value)

    @property
    def interval(self) -> Interval:
        return Interval(self.mean, self.low, self.high, self.n)


# ---- the ablation table ------------------------------------------------------------------------------

@dataclass
class AblationTable:
    variants: list[str]                       # rows, in plan order
    metrics: list[str]                        # columns, in plan order
    reference: str                            # the row Δ is taken against ("full")
    seeds: list[int]
    stats: dict[str, dict[str, Stat]]         # variant -> metric -> the method's values over seeds
    retrain_stats: dict[str, dict[str, Stat]]  # variant -> metric -> Retrain's values over the same runs
    runs: dict[str, list[int]] = field(default_factory=dict)   # variant -> the seeds that contributed

    def delta_full(self, variant: str, metric: str) -> float:
        """variant mean − reference mean (NaN when either is missing)."""
        return self.stats[variant][metric].mean - self.stats[self.reference][metric].mean

    def delta_retrain(self, variant: str, metric: str) -> float:
        """variant mean − Retrain's mean over the same runs; NaN where Retrain has no value for the metric."""
        if metric in NO_RETRAIN_DELTA:
            return math.nan
        return self.stats[variant][metric].mean - self.retrain_stats[variant][metric].mean

    def retrain_row(self) -> dict[str, Stat]:
        """Retrain's values as one row: from the reference variant's runs (one per seed), else any row's."""
        source = self.reference if self.runs.get(self.reference) else next(
            (v for v in self.variants if self.runs.get(v)), self.reference)
        return {m: (Stat(math.nan, math.nan, 0) if m in NO_RETRAIN_DELTA else self.retrain_stats[source][m])
                for m in self.metrics}

    def separated_full(self, variant: str, metric: str) -> bool:
        """The variant's and the reference's intervals separate: Δ vs the reference is established."""
        return self.stats[variant][metric].interval.separates(self.stats[self.reference][metric].interval)

    def separated_retrain(self, variant: str, metric: str) -> bool:
        if metric in NO_RETRAIN_DELTA:
            return False
        return self.stats[variant][metric].interval.separates(self.retrain_stats[variant][metric].interval)

    def markdown(self) -> str:
        """Three Markdown tables (values; Δ vs the reference; Δ vs Retrain) with a line on how to read them."""
        header = "| variant | seeds | " + " | ".join(self.metrics) + " |"
        rule = "|---|---|" + "---:|" * len(self.metrics)
        values = [header, rule]
        for variant in self.variants:
            cells = [mean_ci(self.stats[variant][m]) for m in self.metrics]
            values.append(f"| {variant} | {self._seed_count(variant)} | " + " | ".join(cells) + " |")
        retrain = self.retrain_row()
        values.append(f"| *{RETRAIN}* | {self._seed_count(self.reference)} | "
                      + " | ".join(mean_ci(retrain[m]) for m in self.metrics) + " |")

        def delta(value: float, separated: bool) -> str:
            return _signed(value) + (SEPARATED if separated and math.isfinite(value) else "")

        delta_header = "| variant | " + " | ".join(self.metrics) + " |"
        delta_rule = "|---|" + "---:|" * len(self.metrics)
        versus_reference = [delta_header, delta_rule] + [
            f"| {v} | " + " | ".join(delta(self.delta_full(v, m), self.separated_full(v, m) and v != self.reference)
                                     for m in self.metrics) + " |" for v in self.variants]
        versus_retrain = [delta_header, delta_rule] + [
            f"| {v} | " + " | ".join(delta(self.delta_retrain(v, m), self.separated_retrain(v, m))
                                     for m in self.metrics) + " |" for v in self.variants]
        return "\n".join([
            f"Mean [{INTERVAL_TEXT}] over seeds (accuracies and rates in %).", "", *values, "",
            f"Δ against `{self.reference}` (variant mean − {self.reference} mean). {SEPARATED_TEXT}", "",
            *versus_reference, "",
            f"Δ against {RETRAIN} (variant mean − Retrain's mean over the same runs; closer to 0 is better; "
            f"{NA} where Retrain has no value). {SEPARATED_TEXT}", "", *versus_retrain, ""])

    def csv_text(self) -> str:
        """One row per variant (plan order) and a final Retrain row; per metric (plan order) six columns:
        <m>_mean, <m>_std, <m>_low, <m>_high (the 95% interval), <m>_delta_full, <m>_delta_retrain. Empty
        cells are undefined values."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["variant", "n_seeds"] + [f"{m}_{part}" for m in self.metrics
                                                 for part in ("mean", "std", "low", "high", "delta_full",
                                                              "delta_retrain")])
        for variant in self.variants:
            cells = []
            for m in self.metrics:
                stat = self.stats[variant][m]
                cells += [stat.mean, stat.std, stat.low, stat.high, self.delta_full(variant, m),
                          self.delta_retrain(variant, m)]
            writer.writerow([variant, len(self.runs.get(variant, []))] + [csv_cell(v) for v in cells])
        retrain = self.retrain_row()
        writer.writerow([RETRAIN, len(self.runs.get(self.reference, []))]
                        + [csv_cell(v) for m in self.metrics for v in (retrain[m].mean, retrain[m].std, retrain[m].low,
                                                                        retrain[m].high, math.nan, math.nan)])
        return out.getvalue()

    def _seed_count(self, variant: str) -> str:
        done = len(self.runs.get(variant, []))
        return str(done) if done == len(self.seeds) else f"{done} of {len(self.seeds)}"


def ablation_table(measures: list[RunMeasure], *, variants: list[str], metrics: list[str], seeds: list[int],
                   reference: str = "full") -> AblationTable:
    """Group the runs by variant and summarise each metric; variants and metrics keep the given order."""
    assert reference in variants, f"the reference row {reference!r} is not among the variants"
    stats, retrain_stats, runs = {}, {}, {}
    for variant in variants:
        mine = [r for r in measures if r.variant == variant]
        runs[variant] = sorted(r.seed for r in mine)
        stats[variant] = {m: Stat.of([r.metrics.get(m, math.nan) for r in mine]) for m in metrics}
        retrain_stats[variant] = {m: Stat.of([r.retrain.get(m, math.nan) for r in mine]) for m in metrics}
    return AblationTable(variants=list(variants), metrics=list(metrics), reference=reference, seeds=list(seeds),
                         stats=stats, retrain_stats=retrain_stats, runs=runs)


# ---- the paper's table (compare) ---------------------------------------------------------------------

# The paper's columns (LAF's protocol) per kind of task, then Avg. Gap (SalUn's, METHOD.md).
PAPER_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "class": [("Train_r", "train_r"), ("Train_f", "train_f"), ("Test_r", "test_r"), ("Test_f", "test_f"),
              ("ASR", "asr"), ("Avg. Gap", "avg_gap")],
    "data": [("Train_r", "train_r"), ("Train_f", "train_f"), ("Test", "test"), ("ASR", "asr"),
             ("Avg. Gap", "avg_gap")],
}


@dataclass
class PaperTable:
    kind: str                              # "class" or "data": which columns
    original: dict[str, float]             # f_D's row: one fixed model
    retrain: dict[str, float]              # Retrain's row: one fixed model
    methods: dict[str, list[dict[str, float]]]   # label -> the compared runs' rows (one or more seeds), in input order

    @property
    def columns(self) -> list[tuple[str, str]]:
        return PAPER_COLUMNS[self.kind]

    def stats(self) -> dict[str, dict[str, Stat]]:
        """label -> metric -> Stat over that label's runs (f_D's one model: a point)."""
        out = {label: {m: Stat.of([r.get(m, math.nan) for r in runs]) for _, m in self.columns}
               for label, runs in self.methods.items()}
        out[ORIGINAL] = {m: Stat.point(self.original.get(m, math.nan)) for _, m in self.columns}
        return out

    def closest(self) -> dict[str, set[str]]:
        """metric -> the compared rows (f_D among them) closest to Retrain in that column with confidence:
        the row nearest Retrain whose interval of |value − Retrain| lies below every other row's. Where the
        nearest rows' intervals overlap (one run each: no interval at all) nothing is marked."""
        stats = self.stats()
        return {metric: confidently_closest(self.retrain.get(metric, math.nan),
                                            {label: row[metric] for label, row in stats.items()})
                for _, metric in self.columns}

    def markdown(self) -> str:
        bold = self.closest()
        stats = self.stats()
        lines = ["| method | runs | " + " | ".join(name for name, _ in self.columns) + " |",
                 "|---|---:|" + "---:|" * len(self.columns)]
        lines.append(f"| {RETRAIN} | 1 | " + " | ".join(_plain(self.retrain.get(m)) for _, m in self.columns) + " |")
        for label in (ORIGINAL, *self.methods):
            runs = "1" if label == ORIGINAL else str(len(self.methods[label]))
            cells = [f"**{mean_ci(stats[label][m])}**" if label in bold[m] else mean_ci(stats[label][m])
                     for _, m in self.columns]
            lines.append(f"| {label} | {runs} | " + " | ".join(cells) + " |")
        lines += ["", f"Accuracies and ASR in %; mean [{INTERVAL_TEXT}] over each row's runs; f_D and Retrain are one "
                  "model each. **Bold**: closest to Retrain in its column with confidence (its interval of "
                  "|value − Retrain| below every other row's). Avg. Gap = mean |UA, RA, TA, MIA-Efficacy − "
                  "Retrain's| (lower is better)."]
        unmarked = [name for name, m in self.columns if not bold[m]]
        if unmarked:
            lines.append(f"No row is closest with confidence in {', '.join(unmarked)}: the intervals of the nearest "
                         "rows overlap (a row of one run has none), so no order is claimed there.")
        return "\n".join(lines) + "\n"

    def csv_text(self) -> str:
        """Rows Retrain, f_D, then the compared runs: per column its mean, low and high; a last column
        names each row's confidently-closest columns."""
        bold = self.closest()
        stats = self.stats()
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["method", "runs", *(f"{name}{part}" for name, _ in self.columns
                                             for part in ("", " low", " high")), "closest_to_retrain"])
        writer.writerow([RETRAIN, 1, *(csv_cell(v) for _, m in self.columns
                                       for v in (self.retrain.get(m, math.nan),) * 3), ""])
        for label in (ORIGINAL, *self.methods):
            runs = 1 if label == ORIGINAL else len(self.methods[label])
            marked = ";".join(name for name, m in self.columns if label in bold[m])
            writer.writerow([label, runs, *(csv_cell(v) for _, m in self.columns
                                            for v in (stats[label][m].mean, stats[label][m].low,
                                                      stats[label][m].high)), marked])
        return out.getvalue()


def paper_table(*, task_kind: str, original: dict[str, float], retrain: dict[str, float],
                methods: dict[str, dict[str, float] | list[dict[str, float]]]) -> PaperTable:
    """`methods`: label -> one run's row, or the rows of several runs (seeds) of it."""
    assert task_kind in PAPER_COLUMNS, task_kind
    return PaperTable(kind=task_kind, original=original, retrain=retrain,
                      methods={label: [runs] if isinstance(runs, dict) else list(runs)
                               for label, runs in methods.items()})


def confidently_closest(target: float, stats: dict[str, Stat]) -> set[str]:
    """The row nearest `target` (by mean distance) if its interval of |value − target| lies below every
    other row's; else none. With target 0 and values ≥ 0 (a gap, a wall time) this is the smallest."""
    nearest = closest_to(target, {label: stat.mean for label, stat in stats.items()})
    if len(nearest) != 1 or not math.isfinite(target):
        return set()
    best = next(iter(nearest))
    distance = stats[best].interval.distance_to(target)
    others = [stat.interval.distance_to(target) for label, stat in stats.items()
              if label != best and stat.n > 0]
    return {best} if all(distance.below(other) for other in others) else set()


def closest_to(target: float, values: dict[str, float]) -> set[str]:
    """The labels whose value is nearest `target` (|value − target|; ties share it, NaN never wins).
    With target 0 and values ≥ 0 (a gap, a wall time) this is the smallest value."""
    distances = {label: abs(value - target) for label, value in values.items()}
    finite = {label: d for label, d in distances.items() if math.isfinite(d)}
    if not finite:
        return set()
    low = min(finite.values())
    return {label for label, d in finite.items() if math.isclose(d, low, abs_tol=1e-9)}


# ---- cells -----------------------------------------------------------------------------------------------

SEPARATED = "*"
SEPARATED_TEXT = ("*: the two rows' 95% intervals separate; a Δ without * lies within their overlap, so its sign is "
                  "not established.")
INTERVAL_TEXT = "95% bootstrap interval of the mean"


def mean_ci(stat: Stat, *, digits: int = 2) -> str:
    """"mean [low, high]" to `digits` places; "–" with no value; a point (one fixed model) as its value
    alone; one value of something that varies as "mean [–]" (its interval is not known)."""
    if stat.n == 0:
        return NA
    if stat.low == stat.high == stat.mean and math.isnan(stat.std):
        return f"{stat.mean:.{digits}f}"
    if not stat.interval.known:
        return f"{stat.mean:.{digits}f} [{NA}]"
    return f"{stat.mean:.{digits}f} [{stat.low:.{digits}f}, {stat.high:.{digits}f}]"


def mean_std(stat: Stat, *, digits: int = 2, pm: str = " ± ", lone_std: str | None = None) -> str:
    """"mean ± std" to `digits` places; "–" with no value. With one value (no std) the mean alone, or
    `mean ± lone_std` where a column of several seeds should show the std is undefined (`lone_std="–"`)."""
    if stat.n == 0:
        return NA
    if math.isnan(stat.std):
        return f"{stat.mean:.{digits}f}" if lone_std is None else f"{stat.mean:.{digits}f}{pm}{lone_std}"
    return f"{stat.mean:.{digits}f}{pm}{stat.std:.{digits}f}"


def _signed(value: float) -> str:
    return NA if math.isnan(value) else f"{value:+.2f}"


def _plain(value: float | None) -> str:
    return NA if value is None or math.isnan(value) else f"{value:.2f}"


def csv_cell(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else repr(float(value))
