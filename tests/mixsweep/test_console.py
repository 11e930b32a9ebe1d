"""What `mixsweep run` prints: an 8-column progress table that fits 80 columns, the UI address on the
sweep's runs, and no Tune warning the user cannot act on (the session's recorded sweep)."""
from __future__ import annotations

import re

from mixsweep.ui import WORKFLOW_TYPE

HEADER = re.compile(r"^trial\s+status\s+epoch\b")


def tables(output: str) -> list[list[str]]:
    """Each progress table's lines: its header, its rule and its rows."""
    lines = output.splitlines()
    found = []
    for i, line in enumerate(lines):
        if HEADER.match(line):
            end = next((j for j in range(i + 2, len(lines)) if not lines[j].strip() or lines[j].startswith("==")),
                       len(lines))
            found.append(lines[i:end])
    return found


def test_the_progress_table_has_eight_columns_and_fits_an_80_column_terminal(recorded_sweep):
    state, output = recorded_sweep
    printed = tables(output)
    assert printed, output[-3000:]
    for table in printed:
        # The space searches alpha, omega and lr_unlearner: the table shows the first two (console.py).
        assert table[0].split() == ["trial", "status", "epoch", "avg_gap", "train_f", "ta", "alpha", "omega"]
        assert all(len(line) <= 80 for line in table), "\n".join(table)
    last = printed[-1]
    assert len(last) == 2 + state.trials   # the final table lists every trial
    assert all(row.split()[1] == "TERMINATED" for row in last[2:])


def test_no_tune_snapshot_warning_and_the_ui_address_opens_on_the_runs(recorded_sweep):
    state, output = recorded_sweep
    assert "snapshotting has been triggered" not in output
    assert "TUNE_WARN_EXCESSIVE" not in output
    address = f"/#/experiments/{state.experiment_id}/runs/{state.parent_run_id}?workflowType={WORKFLOW_TYPE}"
    assert f"MLflow UI: {state.tracking_uri}{address}" in output
