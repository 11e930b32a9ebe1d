"""trials.parquet holds each trial's whole config, its method's own fields included, and reads back to it."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from mixsweep.export import REPORTED_METRICS, write_parquet
from mixunlearn.config import UnlearnConfig

STATE = SimpleNamespace(name="s", parent_run_id="p", objectives=[("avg_gap", "min")], threads=1)


def row(cfg: UnlearnConfig, trial: str) -> dict:
    return {"trial_id": trial, "status": "FINISHED", "tune_status": "TERMINATED", "mlflow_run_id": "",
            "duration_s": 1.0, **cfg.to_dict(), **{m: math.nan for m in REPORTED_METRICS}}


@pytest.mark.parametrize("method, own", [("ga", {"lr": 0.0123}),
                                          ("boundary_shrink", {"relabel": "nearest_wrong"}),   # a Hyper with choices
                                          ("mixunlearn", {"alpha": 0.4, "gen_optimizer": "sgd"})])
def test_a_sweeps_table_has_its_methods_own_fields_and_reads_back_to_the_config(tmp_path, method, own):
    configs = [UnlearnConfig.from_dict({"method": method, **own}), UnlearnConfig.from_dict({"method": method})]
    path = write_parquet([row(c, str(i)) for i, c in enumerate(configs)], tmp_path / "trials.parquet", STATE)
    rows = pq.read_table(path).to_pylist()
    for name, value in own.items():
        assert rows[0][name] == value
    fields = set(UnlearnConfig.field_names(method))
    assert [UnlearnConfig.from_params({k: v for k, v in r.items() if k in fields}) for r in rows] == configs
