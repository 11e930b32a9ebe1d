"""The table renderers on hand-made numbers: what the ablation and paper tables say, cell by cell."""
from __future__ import annotations

import math

from mixsweep.tables import RunMeasure, ablation_table, paper_table

RETRAIN = {"train_r": 99.0, "train_f": 0.0, "test": 90.0, "asr": 50.0, "avg_gap": 0.0}


def test_ablation_table_keeps_plan_order_and_takes_deltas_against_the_reference():
    measures = [RunMeasure("no_mix", s, {"asr": 60.0 + s, "avg_gap": 3.0}, {"asr": 55.0}) for s in (0, 1)] + \
               [RunMeasure("full", s, {"asr": 50.0 + 2 * s, "avg_gap": 1.0}, {"asr": 55.0}) for s in (0, 1)]
    table = ablation_table(measures, variants=["no_mix", "full"], metrics=["avg_gap", "asr"], seeds=[0, 1])
    assert table.stats["no_mix"]["asr"].mean == 60.5
    assert math.isclose(table.stats["full"]["asr"].std, math.sqrt(2.0))   # sample std of 50, 52
    assert table.delta_full("no_mix", "asr") == 60.5 - 51.0
    assert table.delta_retrain("full", "asr") == 51.0 - 55.0
    assert math.isnan(table.delta_retrain("full", "avg_gap"))   # Retrain's gap to itself is no reference
    lines = table.csv_text().splitlines()
    assert lines[0].startswith("variant,n_seeds,avg_gap_mean,avg_gap_std,avg_gap_delta_full,avg_gap_delta_retrain,asr_")
    assert [line.split(",")[0] for line in lines[1:]] == ["no_mix", "full", "Retrain"]


def test_a_variant_missing_a_seed_says_so():
    measures = [RunMeasure("full", 0, {"asr": 1.0}, {}), RunMeasure("full", 1, {"asr": 2.0}, {}),
                RunMeasure("no_mix", 0, {"asr": 3.0}, {})]
    markdown = ablation_table(measures, variants=["full", "no_mix"], metrics=["asr"], seeds=[0, 1]).markdown()
    assert "| no_mix | 1 of 2 | 3.00 |" in markdown


def test_paper_table_for_a_data_task_bolds_the_row_closest_to_retrain_per_column():
    methods = {"a": {"train_r": 98.0, "train_f": 10.0, "test": 80.0, "asr": 49.0, "avg_gap": 4.0},
               "b": {"train_r": 99.5, "train_f": 5.0, "test": 95.0, "asr": 52.0, "avg_gap": 3.0}}
    table = paper_table(task_kind="data", original={**RETRAIN, "train_f": 100.0, "avg_gap": 20.0},
                        retrain=RETRAIN, methods=methods)
    markdown = table.markdown()
    assert "| method | Train_r | Train_f | Test | ASR | Avg. Gap |" in markdown
    assert "| Retrain | 99.00 | 0.00 | 90.00 | 50.00 | 0.00 |" in markdown
    assert "| f_D | 99.00 | 100.00 | 90.00 | 50.00 | 20.00 |" in markdown
    # Train_r: |98 − 99| = 1 > |99.5 − 99| = 0.5 -> b; Test: 10 vs 5 -> b; ASR: 1 vs 2 -> a; Avg. Gap: 3 -> b.
    assert "| a | 98.00 | 10.00 | 80.00 | **49.00** | 4.00 |" in markdown
    assert "| b | **99.50** | **5.00** | **95.00** | 52.00 | **3.00** |" in markdown


def test_ties_share_the_mark():
    same = {"train_r": 98.0, "train_f": 1.0, "test": 89.0, "asr": 51.0, "avg_gap": 2.0}
    table = paper_table(task_kind="data", original=RETRAIN, retrain=RETRAIN, methods={"a": same, "b": dict(same)})
    assert all(marked == {"a", "b"} for marked in table.closest().values())
