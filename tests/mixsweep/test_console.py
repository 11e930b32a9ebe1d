"""What `mixsweep run` prints: an 8-column progress table that fits 80 columns, the UI address on the
sweep's runs, and no Tune warning the user cannot act on (the session's recorded sweep)."""
from __future__ import annotations

import re

from mixsweep.ui import WORKFLOW_TYPE
from trainables import records

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


def test_the_best_so_far_line_names_a_completed_trial(recorded_sweep):
    """The last best line compares only trials that ran all their epochs (an early epoch's value would not
    be comparable): its trial ran both epochs, and no other that did has a lower avg_gap."""
    from mlflow.tracking import MlflowClient

    state, output = recorded_sweep
    best = re.findall(r"^best completed trial so far: (\w+), avg_gap (\S+) \(of (\d+) completed\)$", output, re.M)
    assert best, output[-3000:]
    trial_id, value, count = best[-1]
    runs = MlflowClient(state.tracking_uri).search_runs(
        [state.experiment_id], records.trial_runs_of(state.parent_run_id))
    completed = {r.data.tags["mixsweep.trial_id"]: r.data.metrics["avg_gap"] for r in runs
                 if r.info.status == "FINISHED" and "mixsweep.stopped_early" not in r.data.tags}
    assert trial_id in completed and int(count) == len(completed)
    assert float(value) == float(f"{min(completed.values()):.4g}") == float(f"{completed[trial_id]:.4g}")
