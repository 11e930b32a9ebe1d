"""The table renderers on hand-made numbers: what the ablation and paper tables say, cell by cell, and that
they claim a difference or a best row only where the 95% intervals separate."""
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
    assert lines[0].startswith("variant,n_seeds,avg_gap_mean,avg_gap_std,avg_gap_low,avg_gap_high,avg_gap_delta_full,"
                               "avg_gap_delta_retrain,asr_")
    assert [line.split(",")[0] for line in lines[1:]] == ["no_mix", "full", "Retrain"]


def test_a_variant_missing_a_seed_says_so():
    measures = [RunMeasure("full", 0, {"asr": 1.0}, {}), RunMeasure("full", 1, {"asr": 2.0}, {}),
                RunMeasure("no_mix", 0, {"asr": 3.0}, {})]
    markdown = ablation_table(measures, variants=["full", "no_mix"], metrics=["asr"], seeds=[0, 1]).markdown()
    assert "| no_mix | 1 of 2 | 3.00 [–] |" in markdown


def test_ablation_deltas_are_starred_only_where_the_intervals_separate():
    measures = ([RunMeasure("full", s, {"asr": v}, {"asr": 50.0}) for s, v in enumerate([50.0, 51.0, 52.0])]
                + [RunMeasure("close", s, {"asr": v}, {"asr": 50.0}) for s, v in enumerate([51.0, 52.0, 53.0])]
                + [RunMeasure("far", s, {"asr": v}, {"asr": 50.0}) for s, v in enumerate([70.0, 71.0, 72.0])])
    table = ablation_table(measures, variants=["full", "close", "far"], metrics=["asr"], seeds=[0, 1, 2])
    markdown = table.markdown()
    assert "| close | +1.00 |" in markdown          # within the overlap of [50, 52] and [51, 53]: no star
    assert "| far | +20.00* |" in markdown
    assert "| full | 51.00 [50.00, 52.00] |" not in markdown and "| full | 3 | 51.00 [50.00, 52.00] |" in markdown
    assert "*: the two rows' 95% intervals separate" in markdown


def test_paper_table_for_a_data_task_bolds_a_row_only_where_it_is_closest_with_confidence():
    def runs(**values):
        return [{**dict(zip(("train_r", "train_f", "test", "asr", "avg_gap"), row))} for row in zip(*values.values())]
    methods = {"a": runs(tr=[98.0, 97.0, 98.5], tf=[10.0, 12.0, 9.0], te=[80.0, 81.0, 79.0], asr=[49.0, 50.0, 51.0],
                         gap=[4.0, 4.5, 3.5]),
               "b": runs(tr=[99.5, 99.4, 99.6], tf=[5.0, 4.0, 6.0], te=[95.0, 94.0, 96.0], asr=[52.0, 55.0, 49.0],
                         gap=[3.0, 5.0, 2.0])}
    table = paper_table(task_kind="data", original={**RETRAIN, "train_f": 100.0, "avg_gap": 20.0},
                        retrain=RETRAIN, methods=methods)
    markdown = table.markdown()
    assert "| method | runs | Train_r | Train_f | Test | ASR | Avg. Gap |" in markdown
    assert "| Retrain | 1 | 99.00 | 0.00 | 90.00 | 50.00 | 0.00 |" in markdown
    # f_D: one model, points; its Train_r and Test equal Retrain's exactly: closest with confidence.
    assert "| f_D | 1 | **99.00** | 100.00 | **90.00** | 50.00 | 20.00 |" in markdown
    # Train_f: b's [4, 6] lies below a's [9, 12] -> b. ASR: f_D's 50 and a's mean 50 tie -> none.
    assert table.closest()["train_f"] == {"b"} and table.closest()["asr"] == set()
    assert table.closest()["avg_gap"] == set()     # a [3.5, 4.5] and b [2, 5] overlap
    assert "No row is closest with confidence in" in markdown and "Avg. Gap" in markdown.splitlines()[-1]


def test_one_run_each_claims_no_closest_row():
    same = {"train_r": 98.0, "train_f": 1.0, "test": 89.0, "asr": 51.0, "avg_gap": 2.0}
    table = paper_table(task_kind="data", original={**RETRAIN, "train_r": 90.0, "train_f": 90.0, "test": 70.0,
                                                    "asr": 70.0, "avg_gap": 30.0},
                        retrain=RETRAIN, methods={"a": same, "b": {**same, "asr": 60.0, "avg_gap": 9.0}})
    assert all(marked == set() for marked in table.closest().values())   # a run alone has no interval
    assert "| a | 1 | 98.00 [–] |" in table.markdown()
