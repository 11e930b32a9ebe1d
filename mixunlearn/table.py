"""The results table of a run: f_D, Retrain and the method, one row each, in the paper's columns.

    print(format_table({"f_D": metrics_fd, "Retrain": metrics_retrain, "MixUnlearn": metrics}, title="..."))

Torch-free, so the sweep's driver and the MLflow records can write it without loading the methods.
"""
from __future__ import annotations

import math
import os

# Columns of the results table, in the paper's order followed by the SalUn protocol.
COLUMNS = ("train_r", "train_f", "test", "test_r", "test_f", "asr", "ua", "ra", "ta", "mia_efficacy", "avg_gap")


def format_table(rows: dict[str, dict[str, float]], *, title: str = "") -> str:
    columns = [c for c in COLUMNS if any(c in r for r in rows.values())]
    columns += [c for c in ("unlearn_seconds",) if any(c in r for r in rows.values())]
    # Each column as wide as its header or its widest cell, and two spaces apart: a header longer than the
    # cells (unlearn_seconds) never runs into its neighbour.
    widths = [max(len(c), *(len(_cell(r.get(c))) for r in rows.values())) + 2 for c in columns]
    first = max(12, *(len(name) + 2 for name in rows))
    head = f"{'':<{first}}" + "".join(f"{c:>{w}}" for c, w in zip(columns, widths))
    lines = [title] if title else []
    lines += [head, "-" * len(head)]
    for name, metrics in rows.items():
        cells = "".join(f"{_cell(metrics.get(c)):>{w}}" for c, w in zip(columns, widths))
        lines.append(f"{name:<{first}}{cells}")
    lines.append("accuracies and rates in %; closer to Retrain is better; avg_gap = mean |UA, RA, TA, "
                 "MIA-Efficacy - Retrain's|")
    return os.linesep.join(lines)


def _cell(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2f}"
