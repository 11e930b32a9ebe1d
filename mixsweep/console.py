"""What a sweep or an ablation prints while it runs: one progress table narrow enough for an 80-column
terminal, and no Tune advice the user cannot act on.

    reporter = ProgressTable(metrics=["avg_gap"], params=[("alpha", "alpha"), ("omega", "omega")])
    tune.RunConfig(progress_reporter=reporter, ...)

The table has at most 8 columns: trial (Tune's trial id, as in the run's `mixsweep.trial_id` tag), status,
epoch, the objective(s), train_f and TA, then searched parameters while room is left (two with one
objective). Tune's own table adds the trial's host:pid and every searched parameter (16 columns for
the quick preset) and wraps. The full configs are the MLflow runs' params.

Which parameters: the first ones of the space file's `search` section. Before a sweep nothing measures
importance (`mixsweep report` computes it afterwards from the study), and the file is where a user
states priorities: the shipped spaces list METHOD.md's order, alpha (the mixup's Beta) and omega (the
weight of L_real, Eq. 7) first. An ablation shows its variant and seed instead.
"""
from __future__ import annotations

import time
from typing import Any

from ray import tune
from ray.tune.experiment import Trial

from .endings import STOPPED_EARLY, completed, ending

MAX_COLUMNS = 8
FIXED = ("trial", "status", "epoch")
WATCHED = ("train_f", "ta")       # forgetting (Acc on D_f) and utility (Acc on the test set), always shown
MAX_ROWS = 20                     # while running: the running trials first; all of them at the end
UNCHANGED_EVERY_S = 60.0          # an unchanged table is printed again this often (a sign of life), not every 15 s
STATUS_ORDER = {Trial.RUNNING: 0, Trial.PENDING: 1, Trial.PAUSED: 2, Trial.TERMINATED: 3, Trial.ERROR: 4}


def metric_columns(objectives: list[str]) -> list[str]:
    return [*objectives, *(m for m in WATCHED if m not in objectives)]


def param_room(objectives: list[str]) -> int:
    return max(0, MAX_COLUMNS - len(FIXED) - len(metric_columns(objectives)))


class ProgressTable(tune.CLIReporter):
    """Tune's CLI reporter (its timing and its status lines) with a table of our columns.

    `params` are (header, config field) pairs; `labels` maps a config's identity (ablate.run_key) to
    (variant, seed) for an ablation. Plain data only: Tune pickles the reporter with the experiment and
    `Tuner.restore` (mixsweep resume) unpickles it."""

    def __init__(self, *, metrics: list[str], params: list[tuple[str, str]], mode: str | None = None,
                 labels: dict[str, tuple[str, int]] | None = None, max_report_frequency: float = 15.0) -> None:
        self.table_metrics = metric_columns(metrics)
        self.objective = metrics[0] if metrics and mode else None
        self.objective_mode = mode
        self.labels = labels
        room = MAX_COLUMNS - len(FIXED) - len(self.table_metrics)
        self.table_params = list(params)[:max(0, room)]
        super().__init__(metric_columns=self.table_metrics, parameter_columns=[f for _, f in self.table_params],
                         max_report_frequency=max_report_frequency)
        self.last_body = ""
        self.last_printed = float("-inf")

    def report(self, trials: list[Trial], done: bool, *sys_info: str) -> None:
        text = self._progress_str(trials, done, *sys_info)
        body = text.split("\n", 1)[1]   # all but the clock
        if done or body != self.last_body or time.monotonic() - self.last_printed >= UNCHANGED_EVERY_S:
            self._print(text)
            self.last_body, self.last_printed = body, time.monotonic()

    def _progress_str(self, trials: list[Trial], done: bool, *sys_info: str, fmt: str = "psql",
                      delim: str = "\n") -> str:
        running_for = time.time() - self._start_time
        stopped = sum(t.status == Trial.TERMINATED and ending(t.last_result, t.config, []) == STOPPED_EARLY
                      for t in trials)
        lines = [f"== Status == {len(trials)} trials, running for {running_for:.0f} s",
                 *status_lines(sys_info, stopped_early=stopped)]
        best = self.best_line(trials)
        if best:
            lines.append(best)
        shown = sorted(trials, key=lambda t: STATUS_ORDER.get(t.status, 5))
        if not done and len(shown) > MAX_ROWS:
            lines_left = len(shown) - MAX_ROWS
            shown = shown[:MAX_ROWS]
        else:
            lines_left = 0
        headers = [*FIXED, *self.table_metrics, *(h for h, _ in self.table_params)]
        if self.labels is not None:
            headers = [*FIXED, *self.table_metrics, "variant", "seed"]
        rows = [self.row(t) for t in shown]
        lines += render(headers, rows)
        if lines_left:
            lines.append(f"... and {lines_left} more trials")
        for trial in trials:
            if trial.status == Trial.ERROR:
                lines.append(f"trial {trial.trial_id} failed: see {getattr(trial, 'error_file', None) or 'its MLflow run'}")
        return delim.join(lines) + delim

    def row(self, trial: Trial) -> list[str]:
        result = trial.last_result or {}
        cells = [trial.trial_id, trial.status, cell(result.get("epoch"))]
        cells += [cell(result.get(m)) for m in self.table_metrics]
        if self.labels is not None:
            from .ablate import run_key   # the ablation's identity of a config

            variant, seed = self.labels.get(run_key(trial.config), ("?", trial.config.get("seed")))
            return cells + [variant, str(seed)]
        return cells + [cell(trial.config.get(field)) for _, field in self.table_params]

    def best_line(self, trials: list[Trial]) -> str:
        """The best of the trials that ran all their epochs: a running trial's epoch-1 value, or that of a
        trial ASHA stopped, is not comparable with a finished one's (mixsweep/endings.py)."""
        if not self.objective:
            return ""
        scored = [t for t in trials if t.status == Trial.TERMINATED
                  and completed(t.last_result, t.config, [self.objective])]
        if not scored:
            return "best so far: no trial has run all its epochs yet" if trials else ""
        pick = min if self.objective_mode == "min" else max
        best = pick(scored, key=lambda t: t.last_result[self.objective])
        return (f"best completed trial so far: {best.trial_id}, {self.objective} "
                f"{cell(best.last_result[self.objective])} (of {len(scored)} completed)")


def status_lines(sys_info: tuple[str, ...], *, stopped_early: int = 0) -> list[str]:
    """Tune's status lines, less ASHA's rung cut-offs ("Bracket: Iter 4.000: -11.4 | ...": the number of
    trials it stopped is what a user can read) and the FIFO scheduler's name (an ablation stops none).
    ASHA's own count (num_stopped) includes every trial it ends at its last epoch; the line counts the
    trials it stopped early (`stopped_early`)."""
    lines = []
    for line in (part for info in sys_info for part in info.splitlines()):
        if line.startswith("Bracket:") or line == "Using FIFO scheduling algorithm.":
            continue
        if line.startswith("Using AsyncHyperBand: num_stopped="):
            line = f"early stopping (ASHA): {stopped_early} trials stopped early"
        lines.append(line)
    return lines


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A plain table: two spaces between columns, numbers right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    numeric = [i >= 2 and all(_is_number(r[i]) for r in rows) for i in range(len(headers))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text == ""
    return True
