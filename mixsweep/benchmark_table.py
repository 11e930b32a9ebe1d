"""The benchmark's table: every method's best config over several seeds, ranked, against f_D and Retrain.

A pure function of numbers already collected (no MLflow, no Ray), like `tables.py`, whose statistics
(`Stat`), cells and closest-to-Retrain rule it reuses:

    table = benchmark_table([MethodRuns("neggrad_plus", "NegGrad+", {0: metrics0, 1: metrics1, 2: metrics2})],
                            original=f_d_metrics, retrain=retrain_metrics, retrain_seconds=412.0, task_kind="class")
    print(table.markdown())          # ranked by mean Avg. Gap; bold = closest to Retrain in its column
    path.write_text(table.latex())   # a booktabs `tabular`, the same cells and bold marks

Columns (mean ± sample std over the seeds a method finished): UA, RA, TA, MIA-Efficacy, ASR, for a
class-level task Test_r and Test_f, Avg. Gap, then RTE: the unlearning wall time in seconds
(`unlearn_seconds`) and its ratio to Retrain's training time. A seed whose table values are not all
finite (a diverged run) is left out of every column of its method, and the count says so ("2 of 3"); the
seeds are judged by `finished` on UA ... Avg. Gap, not on the wall time, which a diverged run also has.
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass

from .tables import (NA, NO_RETRAIN_DELTA, ORIGINAL, PAPER_COLUMNS, RETRAIN, Stat, closest_to, csv_cell,
                     mean_std)

RTE_RATIO = "rte_ratio"   # unlearn_seconds / Retrain's training seconds: not logged, derived here


@dataclass(frozen=True)
class Column:
    header: str        # Markdown and CSV spelling (the paper's)
    latex: str         # the same, as LaTeX
    key: str           # the logged metric name (or RTE_RATIO)
    digits: int = 2


QUALITY = [Column("UA", "UA", "ua"), Column("RA", "RA", "ra"), Column("TA", "TA", "ta"),
           Column("MIA-Efficacy", "MIA-Efficacy", "mia_efficacy"), Column("ASR", "ASR", "asr")]
CLASS_ONLY = [Column("Test_r", "Test$_r$", "test_r"), Column("Test_f", "Test$_f$", "test_f")]
GAP = Column("Avg. Gap", "Avg.~Gap", "avg_gap")
RTE = [Column("RTE (s)", "RTE (s)", "unlearn_seconds", 1), Column("RTE / Retrain", "RTE / Retrain", RTE_RATIO, 3)]
# Where Retrain has no value to be close to (its gap to itself, the time of unlearning), bold is the smallest.
SMALLEST_WINS = NO_RETRAIN_DELTA | {RTE_RATIO}


def columns_for(task_kind: str) -> list[Column]:
    assert task_kind in PAPER_COLUMNS, f"task_kind is 'class' or 'data', not {task_kind!r}"
    return QUALITY + (CLASS_ONLY if task_kind == "class" else []) + [GAP] + RTE


@dataclass
class MethodRuns:
    name: str                              # the config's method name, e.g. "neggrad_plus"
    title: str                             # METHODS[name].title, e.g. "NegGrad+"
    seeds: dict[int, dict[str, float]]     # seed -> that seed re-run's final metrics (keys as logged)


@dataclass
class BenchmarkRow:
    label: str                  # what the table shows: the method's title, "f_D" or "Retrain"
    name: str                   # the method's name; "f_D" / "Retrain" for the reference rows
    stats: dict[str, Stat]      # column key -> mean, sample std, n over the seeds that count
    seeds: list[int]            # the seeds that count (`finished`); none for a reference row
    excluded: list[int]         # the seeds left out (a non-finite value: a diverged run)
    rank: int | None = None     # 1 = smallest mean Avg. Gap; None for f_D and Retrain

    @property
    def seed_count(self) -> str:
        if self.rank is None:
            return NA   # f_D and Retrain: one model each, shared by every seed's re-run
        done, total = len(self.seeds), len(self.seeds) + len(self.excluded)
        return str(done) if done == total else f"{done} of {total}"


@dataclass
class BenchmarkTable:
    task_kind: str                  # "class" or "data": which columns
    rows: list[BenchmarkRow]        # f_D, Retrain, then the methods ranked by mean Avg. Gap (NaN last)
    retrain_seconds: float          # Retrain's training wall time, the RTE ratio's denominator

    @property
    def columns(self) -> list[Column]:
        return columns_for(self.task_kind)

    @property
    def methods(self) -> list[BenchmarkRow]:
        """The method rows, best first."""
        return [row for row in self.rows if row.rank is not None]

    @property
    def retrain_row(self) -> BenchmarkRow:
        return next(row for row in self.rows if row.rank is None and row.name == RETRAIN)

    def bold(self) -> dict[str, set[str]]:
        """column key -> the method names whose mean is closest to Retrain's (the smallest for Avg. Gap and
        RTE); ties share it. f_D and Retrain are the yardsticks, never marked."""
        retrain = self.retrain_row.stats
        return {c.key: closest_to(0.0 if c.key in SMALLEST_WINS else retrain[c.key].mean,
                                  {row.name: row.stats[c.key].mean for row in self.methods})
                for c in self.columns}

    def notes(self) -> list[str]:
        """One line per method that lost seeds: which, and the count that remains."""
        return [f"{row.label}: n = {len(row.seeds)} of {len(row.seeds) + len(row.excluded)} seeds (seed"
                f"{'s' if len(row.excluded) > 1 else ''} {', '.join(map(str, row.excluded))} left out: a non-finite "
                "value, a diverged run)" for row in self.methods if row.excluded]

    def markdown(self) -> str:
        bold = self.bold()
        lines = ["| rank | method | seeds | " + " | ".join(c.header for c in self.columns) + " |",
                 "|---:|---|---:|" + "---:|" * len(self.columns)]
        for row in self.rows:
            cells = [self._cell(row, c) for c in self.columns]
            cells = [f"**{cell}**" if row.name in bold[c.key] else cell for cell, c in zip(cells, self.columns)]
            lines.append(f"| {'' if row.rank is None else row.rank} | {row.label} | {row.seed_count} | "
                         + " | ".join(cells) + " |")
        retrain_time = (f"{self.retrain_seconds:.1f} s" if math.isfinite(self.retrain_seconds) and
                        self.retrain_seconds > 0 else "not known: no ratio")
        lines += ["", f"Mean ± sample std over the seeds each method finished ({NA}: one seed, no std). Accuracies, "
                  "MIA-Efficacy and ASR in %; Avg. Gap = mean |UA, RA, TA, MIA-Efficacy − Retrain's|; RTE = the "
                  f"unlearning wall time in seconds and as a fraction of Retrain's training time "
                  f"({retrain_time}). **Bold**: closest to Retrain in its column (for Avg. Gap and "
                  "RTE the smallest). Methods ranked by mean Avg. Gap."]
        lines += [f"- {note}" for note in self.notes()]
        return "\n".join(lines) + "\n"

    def csv_text(self) -> str:
        """Rows as in the table (f_D, Retrain, the methods ranked); per column <key>_mean and <key>_std
        (empty: undefined); seeds and seeds_total empty for f_D and Retrain; a last column names the row's
        bold columns."""
        bold = self.bold()
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["rank", "method", "name", "seeds", "seeds_total",
                         *(f"{c.key}_{part}" for c in self.columns for part in ("mean", "std")), "closest_to_retrain"])
        for row in self.rows:
            counts = ("", "") if row.rank is None else (len(row.seeds), len(row.seeds) + len(row.excluded))
            writer.writerow(["" if row.rank is None else row.rank, row.label, row.name, *counts,
                             *(csv_cell(value) for c in self.columns
                               for value in (row.stats[c.key].mean, row.stats[c.key].std)),
                             ";".join(c.header for c in self.columns if row.name in bold[c.key])])
        return out.getvalue()

    def latex(self) -> str:
        """A complete booktabs `tabular` (needs \\usepackage{booktabs}): the Markdown table's cells and bold."""
        bold = self.bold()
        lines = [r"\begin{tabular}{rlr" + "r" * len(self.columns) + "}", r"\toprule",
                 "Rank & Method & Seeds & " + " & ".join(c.latex for c in self.columns) + r" \\", r"\midrule"]
        for i, row in enumerate(self.rows):
            if i and row.rank is not None and self.rows[i - 1].rank is None:
                lines.append(r"\midrule")   # the yardsticks above, the ranked methods below
            label = "$f_D$" if row.rank is None and row.name == ORIGINAL else latex_text(row.label)
            cells = [latex_text(self._cell(row, c)) for c in self.columns]
            cells = [rf"\textbf{{{cell}}}" if row.name in bold[c.key] else cell for cell, c in zip(cells, self.columns)]
            lines.append(f"{'' if row.rank is None else row.rank} & {label} & {latex_text(row.seed_count)} & "
                         + " & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def _cell(self, row: BenchmarkRow, column: Column) -> str:
        # A method's std is shown even when undefined ("–", one seed); a reference row is one measurement.
        return mean_std(row.stats[column.key], digits=column.digits, lone_std=None if row.rank is None else NA)


def benchmark_table(methods: list[MethodRuns], *, original: dict[str, float], retrain: dict[str, float],
                    retrain_seconds: float, task_kind: str) -> BenchmarkTable:
    """f_D's and Retrain's rows (one measurement each) and every method's summary over its seeds, ranked."""
    columns = columns_for(task_kind)
    names = [m.name for m in methods]
    assert len(set(names)) == len(names), f"one row per method: {names} repeats a name"
    assert not {ORIGINAL, RETRAIN} & set(names), "a method is not named like a reference row"
    ratio = (lambda seconds: seconds / retrain_seconds) if retrain_seconds > 0 else (lambda seconds: math.nan)

    def values(metrics: dict[str, float]) -> dict[str, float]:
        return {c.key: float(metrics.get(c.key, math.nan)) for c in columns if c.key != RTE_RATIO} | {
            RTE_RATIO: ratio(float(metrics.get("unlearn_seconds", math.nan)))}

    def reference(label: str, metrics: dict[str, float]) -> BenchmarkRow:
        return BenchmarkRow(label, label, {key: Stat.of([v]) for key, v in values(metrics).items()}, [], [])

    keys = list(values({}))
    judged = [c.key for c in columns if c not in RTE]
    # Retrain's gap to itself is 0; its "unlearning" time is its training time. f_D unlearns nothing.
    rows = [reference(ORIGINAL, {**original, "unlearn_seconds": math.nan}),
            reference(RETRAIN, {**retrain, "avg_gap": 0.0, "unlearn_seconds": retrain_seconds})]
    summaries = []
    for method in methods:
        per_seed = {seed: values(metrics) for seed, metrics in sorted(method.seeds.items())}
        kept = [seed for seed, metrics in sorted(method.seeds.items()) if finished(metrics, judged)]
        stats = {key: Stat.of([per_seed[seed][key] for seed in kept]) for key in keys}
        summaries.append(BenchmarkRow(method.title, method.name, stats, kept,
                                      [seed for seed in per_seed if seed not in kept]))
    # Ranked by mean Avg. Gap, a method with no finished seed last; ties keep the given order.
    summaries.sort(key=gap_order)
    for rank, row in enumerate(summaries, start=1):
        row.rank = rank
    return BenchmarkTable(task_kind=task_kind, rows=rows + summaries, retrain_seconds=retrain_seconds)


def finished(metrics: dict[str, float], judged: list[str]) -> bool:
    """A seed counts when it has an Avg. Gap and no table value of it is NaN or Inf (a diverged run reports
    NaN for every metric). A metric it never logged is no value, not a divergence; the wall time is not
    judged (a diverged run has one too)."""
    return "avg_gap" in metrics and all(math.isfinite(metrics[key]) for key in judged if key in metrics)


def gap_order(row: BenchmarkRow) -> tuple[bool, float]:
    gap = row.stats["avg_gap"].mean
    return (True, 0.0) if math.isnan(gap) else (False, gap)


# ---- LaTeX text --------------------------------------------------------------------------------------

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "±": r"$\pm$", "–": "--", "−": "$-$"}
LATEX_TOKEN = re.compile(r"ℓ(\d*)|[\\&%$#_{}~^±–−]")


def latex_text(text: str) -> str:
    """Plain text (a method's title, a cell) as LaTeX text: specials escaped, ℓ1 as $\\ell_1$."""
    def one(match: re.Match) -> str:
        if match.group(0).startswith("ℓ"):
            sub = match.group(1)
            return r"$\ell$" if not sub else (rf"$\ell_{sub}$" if len(sub) == 1 else rf"$\ell_{{{sub}}}$")
        return LATEX_SPECIAL[match.group(0)]
    return LATEX_TOKEN.sub(one, text)
