"""The benchmark's table and figures on hand-made numbers: 3 methods × 3 seeds, one seed diverged; ranks and
bold only where the 95% intervals separate, f_D ranked like a method."""
from __future__ import annotations

import csv
import io
import math
import re
import shutil
import statistics
import subprocess

import pytest

from mixsweep.benchmark_report import write_figures
from mixsweep.benchmark_table import MethodRuns, benchmark_table, latex_text

RETRAIN = {"ua": 9.0, "ra": 99.0, "ta": 91.0, "mia_efficacy": 14.0, "asr": 50.0, "test": 91.0, "avg_gap": 0.0}
ORIGINAL = {"ua": 1.0, "ra": 99.5, "ta": 92.0, "mia_efficacy": 3.0, "asr": 58.0, "test": 92.0, "avg_gap": 5.5}
RETRAIN_SECONDS = 200.0


def seed_metrics(ua, ra, ta, mia, asr, seconds):
    gap = statistics.fmean(abs(v - RETRAIN[k]) for k, v in
                           {"ua": ua, "ra": ra, "ta": ta, "mia_efficacy": mia}.items())
    return {"ua": ua, "ra": ra, "ta": ta, "mia_efficacy": mia, "asr": asr, "test": ta, "avg_gap": gap,
            "unlearn_seconds": seconds, "train_r": ra, "train_f": 100 - ua}


METHODS = [
    # GA: seed 2 diverged (NaN accuracies; its wall time is still logged)
    MethodRuns("ga", "GA", {0: seed_metrics(30.0, 80.0, 75.0, 40.0, 45.0, 2.0),
                            1: seed_metrics(26.0, 84.0, 79.0, 36.0, 47.0, 4.0),
                            2: {**seed_metrics(math.nan, math.nan, math.nan, math.nan, math.nan, 3.0),
                                "avg_gap": math.nan}}),
    MethodRuns("l1_sparse", "ℓ1-sparse", {s: seed_metrics(8.0 + s, 98.0, 90.0 + s, 12.0 + s, 51.0, 20.0 + s)
                                          for s in range(3)}),
    MethodRuns("neggrad_plus", "NegGrad+", {s: seed_metrics(6.0, 97.0 - s, 89.0, 10.0, 49.0 + s, 10.0)
                                            for s in range(3)}),
]


@pytest.fixture(scope="module")
def table():
    return benchmark_table(METHODS, original=ORIGINAL, retrain=RETRAIN, retrain_seconds=RETRAIN_SECONDS,
                           task_kind="data")


def test_methods_are_ranked_with_confidence_with_means_intervals_and_counts(table):
    assert [row.label for row in table.rows] == ["Retrain", "ℓ1-sparse", "NegGrad+", "f_D", "GA"]
    l1, neggrad, ga = table.methods
    # Avg. Gap intervals: ℓ1 [0.50, 1.25], NegGrad+ [2.75, 3.25], f_D 5.50 (one model), GA [16.5, 20.5]: disjoint.
    assert [row.rank for row in table.ranked] == [1, 2, 3, 4]
    assert table.original_row.rank == 3 and table.retrain_row.rank is None
    assert ga.seeds == [0, 1] and ga.excluded == [2]          # the diverged seed counts nowhere
    assert ga.stats["ua"].mean == 28.0 and math.isclose(ga.stats["ua"].std, math.sqrt(8.0))
    assert (ga.stats["ua"].low, ga.stats["ua"].high) == (26.0, 30.0)   # two seeds: the bootstrap spans both
    assert ga.stats["unlearn_seconds"].mean == 3.0              # seeds 0, 1 only: (2 + 4) / 2
    assert math.isclose(ga.stats["rte_ratio"].mean, 3.0 / RETRAIN_SECONDS)
    assert l1.stats["ta"].mean == 91.0 and l1.stats["ta"].std == 1.0 and l1.stats["ta"].low >= 90.0
    assert neggrad.stats["ua"].std == 0.0 and (neggrad.stats["ua"].low, neggrad.stats["ua"].high) == (6.0, 6.0)
    assert [row.label for row in table.beating_doing_nothing()] == ["ℓ1-sparse", "NegGrad+"]


def test_markdown_bolds_only_the_cells_closest_to_retrain_with_confidence(table):
    markdown = table.markdown()
    assert ("| rank | method | seeds | UA | RA | TA | MIA-Efficacy | ASR | Avg. Gap | RTE (s) | RTE / Retrain |"
            in markdown)
    assert "Test_r" not in markdown                           # a data-level task
    assert "|  | Retrain | – | 9.00 | 99.00 | 91.00 | 14.00 | 50.00 | 0.00 | 200.0 | 1.000 |" in markdown
    # f_D is one model: points, ranked third; its RA (|99.5 − 99| = 0.5, a point) is closest with confidence.
    assert "| 3 | f_D | – | 1.00 | **99.50** | 92.00 | 3.00 | 58.00 | 5.50 | – | – |" in markdown
    # Distances to Retrain's values: UA: ℓ1 [0, 1] below NegGrad+'s 3 and the rest -> bold; MIA: ℓ1 [0, 2] vs
    # NegGrad+'s 4 -> bold; TA: ℓ1 [0, 1] and f_D's 1 touch -> none; ASR: NegGrad+ [0, 1] and ℓ1's 1 touch -> none.
    row = next(line for line in markdown.splitlines() if "ℓ1-sparse" in line)
    assert row == ("| 1 | ℓ1-sparse | 3 | **9.00 [8.00, 10.00]** | 98.00 [98.00, 98.00] | 91.00 [90.00, 92.00] "
                   "| **13.00 [12.00, 14.00]** | 51.00 [51.00, 51.00] | **0.83 [0.50, 1.25]** | 21.0 [20.0, 22.0] "
                   "| 0.105 [0.100, 0.110] |")
    ga = next(line for line in markdown.splitlines() if "| GA |" in line)
    assert ga.startswith("| 4 | GA | 2 of 3 |") and ga.endswith("| **3.0 [2.0, 4.0]** | **0.015 [0.010, 0.020]** |")
    assert "- No cell is bold in TA, ASR: the intervals" in markdown
    assert "- Better than doing nothing with confidence (Avg. Gap interval below f_D's 5.50): ℓ1-sparse, NegGrad+." \
        in markdown
    assert "GA: n = 2 of 3 seeds (seed 2 left out" in markdown
    assert "share a rank" not in markdown                     # every Avg. Gap interval separates here


def test_a_table_with_overlapping_intervals_prints_no_rank_difference_between_those_rows():
    # A and B: Avg. Gap intervals that overlap ([1, 4] and [3, 7]: with three seeds the percentile bootstrap
    # spans about their range); C clearly worse; f_D (3.5) inside both.
    def runs(gaps):
        return {s: {**seed_metrics(9.0, 99.0, 91.0, 14.0, 50.0, 1.0), "avg_gap": g} for s, g in enumerate(gaps)}
    methods = [MethodRuns("a", "A", runs([1.0, 4.0, 2.0])), MethodRuns("b", "B", runs([3.0, 7.0, 5.0])),
               MethodRuns("c", "C", runs([20.0, 21.0, 22.0]))]
    table = benchmark_table(methods, original={**ORIGINAL, "avg_gap": 3.5}, retrain=RETRAIN,
                            retrain_seconds=RETRAIN_SECONDS, task_kind="data")
    ranks = {row.label: row.rank for row in table.ranked}
    assert ranks["A"] == ranks["B"] == ranks["f_D"] == 1 and ranks["C"] == 4
    markdown = table.markdown()
    for label in ("A", "B", "f_D"):
        assert any(line.startswith(f"| 1 | {label} |") for line in markdown.splitlines()), label
    assert "| 4 | C |" in markdown
    assert "- Rows that share a rank have overlapping 95% intervals of Avg. Gap: their order is not established." \
        in markdown
    assert "- No method beats doing nothing with confidence: no method's Avg. Gap interval lies below f_D's 3.50." \
        in markdown
    assert not table.bold()["avg_gap"]                        # the smallest gap is not established either
    assert "**" not in next(line for line in markdown.splitlines() if line.startswith("| 1 | A |")).split("|")[9]


def test_one_seed_shows_an_unknown_interval():
    one = [MethodRuns("ga", "GA", {0: seed_metrics(30.0, 80.0, 75.0, 40.0, 45.0, 2.0)})]
    table = benchmark_table(one, original=ORIGINAL, retrain=RETRAIN, retrain_seconds=RETRAIN_SECONDS,
                            task_kind="class")
    markdown = table.markdown()
    assert "| Test_r | Test_f |" in markdown and "| 30.00 [–] |" in markdown
    assert table.methods[0].stats["test_r"].n == 0            # not logged: no value, and the seed still counts
    assert table.methods[0].seeds == [0]
    assert table.methods[0].rank == 1 and table.original_row.rank == 1   # one seed separates from nothing


def test_a_method_whose_every_seed_diverged_ranks_last_and_is_drawn_nowhere(tmp_path):
    lost = MethodRuns("rl", "RL", {s: dict.fromkeys(["ua", "ra", "ta", "mia_efficacy", "asr", "avg_gap"], math.nan)
                                   | {"unlearn_seconds": 1.0} for s in (0, 1)})
    table = benchmark_table([lost, *METHODS], original=ORIGINAL, retrain=RETRAIN, retrain_seconds=math.nan,
                            task_kind="data")
    assert [row.label for row in table.methods] == ["ℓ1-sparse", "NegGrad+", "GA", "RL"]
    assert "| 5 | RL | 0 of 2 | – | – | – | – | – | – | – | – |" in table.markdown()
    assert math.isnan(table.methods[0].stats["rte_ratio"].mean)     # no Retrain time: no ratio
    paths = write_figures(tmp_path, table, {"RL": [math.nan, math.nan]}, objective="avg_gap", mode="min")
    assert all(path.stat().st_size > 0 for path in paths)


def test_csv_parses_back_to_the_same_numbers(table):
    rows = list(csv.DictReader(io.StringIO(table.csv_text())))
    assert [r["method"] for r in rows] == [row.label for row in table.rows]
    for parsed, row in zip(rows, table.rows):
        for column in table.columns:
            for part in ("mean", "std", "low", "high"):
                want = getattr(row.stats[column.key], part)
                cell = parsed[f"{column.key}_{part}"]
                assert (cell == "" and math.isnan(want)) or float(cell) == want
    ga = rows[-1]
    assert (ga["rank"], ga["seeds"], ga["seeds_total"]) == ("4", "2", "3")
    assert ga["closest_to_retrain"] == "RTE (s);RTE / Retrain"
    assert rows[0]["seeds"] == "" and rows[0]["rank"] == "" and rows[0]["method"] == "Retrain"
    assert next(r for r in rows if r["method"] == "f_D")["rank"] == "3"


def test_latex_has_the_same_bold_cells_escaped_and_balanced(table):
    latex = table.latex()
    assert latex.startswith(r"\begin{tabular}") and latex.rstrip().endswith(r"\end{tabular}")
    assert r"\toprule" in latex and r"\bottomrule" in latex
    assert r"$\ell_1$-sparse" in latex and "$f_D$" in latex and "ℓ" not in latex and "±" not in latex
    markdown_bold = [cell for line in table.markdown().splitlines() if line.startswith("|")
                     for cell in re.findall(r"\*\*(.+?)\*\*", line)]
    latex_bold = re.findall(r"\\textbf\{(.+?)\}(?= &| \\\\)", latex)
    assert [cell.replace("–", "--") for cell in markdown_bold] == latex_bold
    unescaped = re.sub(r"\\[{}]", "", latex)
    depth = 0
    for char in unescaped:
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0
    assert depth == 0
    assert all(line.count("&") == len(table.columns) + 2 for line in latex.splitlines() if line.endswith(r"\\"))
    assert latex_text("a_b 5% & #1") == r"a\_b 5\% \& \#1"


def test_latex_compiles(table, tmp_path):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed here; the structure is checked by the test above")
    as_class = benchmark_table(METHODS, original=ORIGINAL, retrain=RETRAIN, retrain_seconds=RETRAIN_SECONDS,
                               task_kind="class")   # Test_r, Test_f columns too
    document = tmp_path / "t.tex"
    document.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                        + table.latex() + "\n" + as_class.latex() + "\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:]


def test_figures_are_written_as_pngs(table, tmp_path):
    trials = {"GA": [40.0, math.nan, 20.0, 25.0], "ℓ1-sparse": [3.0, 2.0, 0.6], "NegGrad+": [5.0, 4.0, 4.5, 2.0]}
    paths = write_figures(tmp_path, table, trials, objective="avg_gap", mode="min")
    assert sorted(p.name for p in paths) == ["avg_gap.png", "budget.png", "cost_quality.png"]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    PIL = pytest.importorskip("PIL.Image", reason="Pillow reads the PNGs back")
    for path in paths:
        with PIL.open(path) as image:
            assert image.size[0] > 300 and image.size[1] > 200
            assert sum(1 for count in image.convert("L").histogram() if count) > 10   # drawn on, not a blank canvas
            assert all(title in image.text["Description"] for title in trials)   # the methods it draws


def test_audit_columns_show_klom_and_ulira_with_intervals_and_the_noise_floor():
    from mixsweep.tables import Stat

    def stat(value, low, high):
        return Stat(value, math.nan, 16, low, high)
    audits = {"ga": {"klom_forget_median": stat(1.1, 0.6, 4.0), "ulira_auc": stat(0.84, 0.73, 0.92)},
              "l1_sparse": {"klom_forget_median": stat(0.2, 0.1, 0.3), "ulira_auc": stat(0.55, 0.47, 0.60)},
              "f_D": {"klom_forget_median": stat(1.2, 0.6, 4.1), "ulira_auc": stat(0.85, 0.74, 0.93)},
              "Retrain": {"klom_forget_median": stat(0.13, 0.06, 0.2), "ulira_auc": stat(0.53, 0.46, 0.59)},
              "noise": {"klom_forget_median": stat(0.26, 0.10, 0.40)}}
    table = benchmark_table(METHODS, original=ORIGINAL, retrain=RETRAIN, retrain_seconds=RETRAIN_SECONDS,
                            task_kind="data", audits=audits)
    markdown = table.markdown()
    assert "| Avg. Gap | KLOM (forget, median) | U-LiRA AUC | RTE (s) |" in markdown
    assert "| 1.200 [0.600, 4.100] | 0.850 [0.740, 0.930] |" in next(
        line for line in markdown.splitlines() if "| f_D |" in line)
    # ℓ1-sparse's KLOM [0.1, 0.3] lies below GA's and f_D's: bold; NegGrad+ has no audit: "–".
    assert "| **0.200 [0.100, 0.300]** |" in next(line for line in markdown.splitlines() if "ℓ1-sparse" in line)
    assert "| – | – |" in next(line for line in markdown.splitlines() if "NegGrad+" in line)
    assert "KLOM's noise floor (two halves of the oracles, forget points): 0.260 [0.100, 0.400]" in markdown
    assert "U-LiRA is not applicable" not in markdown
    klass = benchmark_table(METHODS, original=ORIGINAL, retrain=RETRAIN, retrain_seconds=RETRAIN_SECONDS,
                            task_kind="class", audits=audits)
    assert "U-LiRA is not applicable on class forgetting" in klass.markdown()
