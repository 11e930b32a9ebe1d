"""The benchmark's table: every method's best config over several seeds, ranked, against f_D and Retrain.

A pure function of numbers already collected (no MLflow, no Ray), like `tables.py`, whose statistics
(`Stat`), cells and closest-to-Retrain rule it reuses:

    table = benchmark_table([MethodRuns("neggrad_plus", "NegGrad+", {0: metrics0, 1: metrics1, 2: metrics2})],
                            original=f_d_metrics, retrain=retrain_metrics, retrain_seconds=412.0, task_kind="class")
    print(table.markdown())          # ranked by Avg. Gap with confidence; bold = confidently closest to Retrain
    path.write_text(table.latex())   # a booktabs `tabular`, the same cells and bold marks

Columns (mean [95% bootstrap interval of the mean] over the seeds a method finished): UA, RA, TA,
MIA-Efficacy, ASR, for a class-level task Test_r and Test_f, Avg. Gap, then RTE: the unlearning wall time
in seconds (`unlearn_seconds`) and its ratio to Retrain's training time; with an audit (mixsweep/audit.py)
its per-example columns (AUDIT_COLUMNS). A seed whose table values are not all finite (a diverged run) is
left out of every column of its method, and the count says so ("2 of 3"); the seeds are judged by
`finished` on UA ... Avg. Gap, not on the wall time, which a diverged run also has.

Ranks and bold claim only what the intervals establish (EVALUATION.md "Statistics in every table"):
- f_D, doing nothing, is ranked like a method. Its row is one fixed model, a point.
- A row's rank is 1 + the number of rows whose Avg. Gap interval lies wholly below its own: rows whose
  intervals overlap share a rank, and the table says so. Whether any method beats doing nothing with
  confidence is one line under the table.
- A cell is bold only where its row is closest to Retrain with confidence (tables.confidently_closest).
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass

from mixunlearn.judge.audit import NOT_APPLICABLE as ULIRA_NOT_APPLICABLE
from mixunlearn.judge.intervals import beats, confident_ranks

from .tables import (INTERVAL_TEXT, NA, ORIGINAL, PAPER_COLUMNS, RETRAIN, Stat,
                     confidently_closest, csv_cell, mean_ci)

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
# An audit's per-example figures (mixsweep/audit.py), when the rows carry them: KLOM's median over the forget
# points (0 ideal; the noise floor in practice) and U-LiRA's AUC (0.5 ideal; not defined on class forgetting).
AUDIT_COLUMNS = [Column("KLOM (forget, median)", "KLOM$_f$", "klom_forget_median", 3),
                 Column("U-LiRA AUC", "U-LiRA AUC", "ulira_auc", 3)]
# Where Retrain has no value to be close to (its gap to itself, the time of unlearning, the audit's figures,
# whose ideal is a number of their own), bold is the nearest to IDEAL.
IDEAL = {"avg_gap": 0.0, "unlearn_seconds": 0.0, RTE_RATIO: 0.0, "klom_forget_median": 0.0, "ulira_auc": 0.5}


def columns_for(task_kind: str, *, audit: bool = False) -> list[Column]:
    assert task_kind in PAPER_COLUMNS, f"task_kind is 'class' or 'data', not {task_kind!r}"
    return QUALITY + (CLASS_ONLY if task_kind == "class" else []) + [GAP] + (AUDIT_COLUMNS if audit else []) + RTE


@dataclass
class MethodRuns:
    name: str                              # the config's method name, e.g. "neggrad_plus"
    title: str                             # METHODS[name].title, e.g. "NegGrad+"
    seeds: dict[int, dict[str, float]]     # seed -> that seed re-run's final metrics (keys as logged)


@dataclass
class BenchmarkRow:
    label: str                  # what the table shows: the method's title, "f_D" or "Retrain"
    name: str                   # the method's name; "f_D" / "Retrain" for the reference rows
    stats: dict[str, Stat]      # column key -> mean, sample std, n, interval over the seeds that count
    seeds: list[int]            # the seeds that count (`finished`); none for a reference row
    excluded: list[int]         # the seeds left out (a non-finite value: a diverged run)
    rank: int | None = None     # 1 + rows better with confidence on Avg. Gap; None for Retrain, the yardstick

    @property
    def reference(self) -> bool:
        return self.name in (ORIGINAL, RETRAIN)

    @property
    def seed_count(self) -> str:
        if self.reference:
            return NA   # f_D and Retrain: one model each, shared by every seed's re-run
        done, total = len(self.seeds), len(self.seeds) + len(self.excluded)
        return str(done) if done == total else f"{done} of {total}"


@dataclass
class BenchmarkTable:
    task_kind: str                  # "class" or "data": which columns
    rows: list[BenchmarkRow]        # Retrain, then f_D and the methods by confident rank (NaN last)
    retrain_seconds: float          # Retrain's training wall time, the RTE ratio's denominator
    audit: bool = False             # the rows carry an audit's KLOM and U-LiRA columns
    noise_floor: Stat | None = None   # the audit's KLOM between two halves of the oracles (forget points)

    @property
    def columns(self) -> list[Column]:
        return columns_for(self.task_kind, audit=self.audit)

    @property
    def ranked(self) -> list[BenchmarkRow]:
        """f_D and the methods, best first."""
        return [row for row in self.rows if row.rank is not None]

    @property
    def methods(self) -> list[BenchmarkRow]:
        """The method rows, best first."""
        return [row for row in self.ranked if not row.reference]

    @property
    def retrain_row(self) -> BenchmarkRow:
        return next(row for row in self.rows if row.name == RETRAIN)

    @property
    def original_row(self) -> BenchmarkRow:
        return next(row for row in self.rows if row.name == ORIGINAL)

    def bold(self) -> dict[str, set[str]]:
        """column key -> the row (f_D or a method) closest to Retrain with confidence (to the column's IDEAL
        where Retrain has no value to be close to); empty where the nearest rows' intervals overlap."""
        retrain = self.retrain_row.stats
        return {c.key: confidently_closest(IDEAL.get(c.key, retrain[c.key].mean),
                                           {row.name: row.stats[c.key] for row in self.ranked})
                for c in self.columns}

    def beating_doing_nothing(self) -> list[BenchmarkRow]:
        """The methods whose Avg. Gap is below f_D's with confidence."""
        original = self.original_row.stats["avg_gap"].interval
        return [row for row in self.methods if beats(row.stats["avg_gap"].interval, original)]

    def notes(self) -> list[str]:
        """What the ranks and bold cells do and do not establish, then one line per method that lost seeds."""
        lines = []
        ranks = [row.rank for row in self.ranked if math.isfinite(row.stats["avg_gap"].mean)]
        if len(ranks) != len(set(ranks)):
            lines.append("Rows that share a rank have overlapping 95% intervals of Avg. Gap: their order is not "
                         "established.")
        winners = self.beating_doing_nothing()
        gap = self.original_row.stats["avg_gap"].mean
        if not winners:
            lines.append(f"No method beats doing nothing with confidence: no method's Avg. Gap interval lies below "
                         f"f_D's {gap:.2f}.")
        else:
            lines.append("Better than doing nothing with confidence (Avg. Gap interval below f_D's "
                         f"{gap:.2f}): {', '.join(row.label for row in winners)}.")
        unmarked = [c.header for c, marked in zip(self.columns, self.bold().values()) if not marked]
        if unmarked:
            lines.append(f"No cell is bold in {', '.join(unmarked)}: the intervals of the rows nearest "
                         f"{RETRAIN} (or the ideal) overlap, so no row is closest with confidence.")
        if self.audit and self.noise_floor is not None and self.noise_floor.n:
            lines.append(f"KLOM's noise floor (two halves of the oracles, forget points): "
                         f"{mean_ci(self.noise_floor, digits=3)}; a KLOM inside it is as close to retraining as "
                         "this pool can tell.")
        if self.audit and self.task_kind == "class":
            lines.append(ULIRA_NOT_APPLICABLE)
        lines += [f"{row.label}: n = {len(row.seeds)} of {len(row.seeds) + len(row.excluded)} seeds (seed"
                  f"{'s' if len(row.excluded) > 1 else ''} {', '.join(map(str, row.excluded))} left out: a "
                  "non-finite value, a diverged run)" for row in self.methods if row.excluded]
        return lines

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
        audit = (" KLOM: median over the forget points of KL(oracles || unlearned models) of the true-class "
                 "margin (0 ideal); U-LiRA AUC: per-example likelihood-ratio attack, unlearned models against "
                 "oracles (0.5 ideal); both over the audit's pool of N models each, KLOM's interval from resampling the forget "
                 "points, U-LiRA's from resampling the forget examples; Retrain's row: exact retraining (N more "
                 "Retrain seeds)."
                 if self.audit else "")
        lines += ["", f"Mean [{INTERVAL_TEXT}] over the seeds each method finished ({NA}: one seed, no interval); "
                  "f_D and Retrain are one model each. Accuracies, MIA-Efficacy and ASR in %; Avg. Gap = mean |UA, "
                  "RA, TA, MIA-Efficacy − Retrain's|; RTE = the unlearning wall time in seconds and as a fraction of "
                  f"Retrain's training time ({retrain_time}).{audit} Rank = 1 + the rows whose Avg. Gap interval "
                  "lies wholly below; **bold**: closest to Retrain in its column with confidence (for Avg. Gap and "
                  "RTE the smallest)."]
        lines += [f"- {note}" for note in self.notes()]
        return "\n".join(lines) + "\n"

    def csv_text(self) -> str:
        """Rows as in the table (Retrain, then the ranked rows); per column <key>_mean, _std, _low and _high
        (empty: undefined); seeds and seeds_total empty for f_D and Retrain; a last column names the row's
        bold columns."""
        bold = self.bold()
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["rank", "method", "name", "seeds", "seeds_total",
                         *(f"{c.key}_{part}" for c in self.columns for part in ("mean", "std", "low", "high")),
                         "closest_to_retrain"])
        for row in self.rows:
            counts = ("", "") if row.reference else (len(row.seeds), len(row.seeds) + len(row.excluded))
            writer.writerow(["" if row.rank is None else row.rank, row.label, row.name, *counts,
                             *(csv_cell(value) for c in self.columns
                               for value in (row.stats[c.key].mean, row.stats[c.key].std, row.stats[c.key].low,
                                             row.stats[c.key].high)),
                             ";".join(c.header for c in self.columns if row.name in bold[c.key])])
        return out.getvalue()

    def latex(self) -> str:
        """A complete booktabs `tabular` (needs \\usepackage{booktabs}): the Markdown table's cells and bold."""
        bold = self.bold()
        lines = [r"\begin{tabular}{rlr" + "r" * len(self.columns) + "}", r"\toprule",
                 "Rank & Method & Seeds & " + " & ".join(c.latex for c in self.columns) + r" \\", r"\midrule"]
        for i, row in enumerate(self.rows):
            if i and row.rank is not None and self.rows[i - 1].rank is None:
                lines.append(r"\midrule")   # the yardstick above, the ranked rows below
            label = "$f_D$" if row.name == ORIGINAL else latex_text(row.label)
            cells = [latex_text(self._cell(row, c)) for c in self.columns]
            cells = [rf"\textbf{{{cell}}}" if row.name in bold[c.key] else cell for cell, c in zip(cells, self.columns)]
            lines.append(f"{'' if row.rank is None else row.rank} & {label} & {latex_text(row.seed_count)} & "
                         + " & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def _cell(self, row: BenchmarkRow, column: Column) -> str:
        return mean_ci(row.stats[column.key], digits=column.digits)


def benchmark_table(methods: list[MethodRuns], *, original: dict[str, float], retrain: dict[str, float],
                    retrain_seconds: float, task_kind: str,
                    audits: dict[str, dict[str, Stat]] | None = None) -> BenchmarkTable:
    """Retrain's row (the yardstick), f_D's (one model, ranked like a method) and every method's summary
    over its seeds, ranked with confidence.

    audits: row name (a method's name, "f_D", "Retrain": exact retraining) -> an audit's figures (AUDIT_COLUMNS
    keys) as Stats with their intervals, and "noise" -> KLOM's noise floor; the columns appear when any row
    has one (mixsweep/audit.py benchmark_audits)."""
    audits = dict(audits or {})
    noise = audits.pop("noise", {}).get("klom_forget_median")
    audit = bool(audits)
    columns = columns_for(task_kind, audit=audit)
    names = [m.name for m in methods]
    assert len(set(names)) == len(names), f"one row per method: {names} repeats a name"
    assert not {ORIGINAL, RETRAIN} & set(names), "a method is not named like a reference row"
    ratio = (lambda seconds: seconds / retrain_seconds) if retrain_seconds > 0 else (lambda seconds: math.nan)
    audit_keys = [c.key for c in AUDIT_COLUMNS] if audit else []

    def values(metrics: dict[str, float]) -> dict[str, float]:
        return {c.key: float(metrics.get(c.key, math.nan)) for c in columns
                if c.key != RTE_RATIO and c.key not in audit_keys} | {
            RTE_RATIO: ratio(float(metrics.get("unlearn_seconds", math.nan)))}

    def with_audit(name: str, stats: dict[str, Stat]) -> dict[str, Stat]:
        found = audits.get(name, {})
        return stats | {key: found.get(key, Stat(math.nan, math.nan, 0)) for key in audit_keys}

    def reference(label: str, metrics: dict[str, float]) -> BenchmarkRow:
        return BenchmarkRow(label, label, with_audit(label, {key: Stat.point(v) for key, v in values(metrics).items()}),
                            [], [])

    keys = list(values({}))
    judged = [c.key for c in columns if c not in RTE and c.key not in audit_keys]
    # Retrain's gap to itself is 0; its "unlearning" time is its training time. f_D unlearns nothing.
    retrain_row = reference(RETRAIN, {**retrain, "avg_gap": 0.0, "unlearn_seconds": retrain_seconds})
    ranked = [reference(ORIGINAL, {**original, "unlearn_seconds": math.nan})]
    for method in methods:
        per_seed = {seed: values(metrics) for seed, metrics in sorted(method.seeds.items())}
        kept = [seed for seed, metrics in sorted(method.seeds.items()) if finished(metrics, judged)]
        stats = with_audit(method.name, {key: Stat.of([per_seed[seed][key] for seed in kept]) for key in keys})
        ranked.append(BenchmarkRow(method.title, method.name, stats, kept,
                                   [seed for seed in per_seed if seed not in kept]))
    ranks = confident_ranks({row.name: row.stats["avg_gap"].interval for row in ranked})
    for row in ranked:
        row.rank = ranks[row.name]
    # By rank, then mean Avg. Gap (a row with none last); ties keep the given order (f_D first).
    ranked.sort(key=lambda row: (row.rank, *gap_order(row)))
    return BenchmarkTable(task_kind=task_kind, rows=[retrain_row, *ranked], retrain_seconds=retrain_seconds,
                          audit=audit, noise_floor=noise)


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
