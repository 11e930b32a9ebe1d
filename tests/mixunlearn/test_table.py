"""The plain entry point's results table: every header stands apart and sits over its column."""
from __future__ import annotations

from mixunlearn.table import format_table


def test_headers_never_run_together_and_align_with_their_cells():
    rows = {"f_D": {"train_r": 99.0, "ua": 1.0, "avg_gap": 21.92},
            "Retrain": {"train_r": 98.0, "ua": 100.0, "avg_gap": 0.0},
            "Retrain (re-run)": {"train_r": 98.0, "ua": 100.0, "avg_gap": 0.0, "unlearn_seconds": 1234.5}}
    lines = format_table(rows).splitlines()
    head = lines[0]
    assert head.split() == ["train_r", "ua", "avg_gap", "unlearn_seconds"]   # not "avg_gapunlearn_seconds"
    for line in lines[2:5]:
        assert len(line) == len(head)
        # Every cell ends where its header ends (right-aligned under it).
        for header in head.split():
            end = head.index(header) + len(header)
            assert line[end - 1] != " " and (end == len(line) or line[end] == " ")
    assert lines[4].startswith("Retrain (re-run)") and "1234.50" in lines[4]
