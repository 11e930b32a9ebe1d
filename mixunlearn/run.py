"""One unlearning run end to end: data -> split -> reference models -> MixUnlearn -> metrics table.

    from mixunlearn import UnlearnConfig, run
    result = run(UnlearnConfig(dataset="fashion_mnist", task="class", forget_class=0))
    print(result.table())

`prepare` does everything that does not change during unlearning (and is shared by every trial of a
sweep through the reference-model cache); `epochs` yields after every epoch so that a caller (a Ray
Tune trainable, a notebook) can report and checkpoint; `run` is the thin plain entry point.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from .config import UnlearnConfig
from .data import ImageData, default_cache_dir, load_data
from .metrics import ATTACKER, avg_gap, evaluate
from .reference import References, reference_models
from .reference_store import ReferenceStore
from .tasks import ForgetSplit, make_split
from .unlearn import MixUnlearn

# Columns of the results table, in the paper's order followed by the SalUn protocol.
COLUMNS = ("train_r", "train_f", "test", "test_r", "test_f", "asr", "ua", "ra", "ta", "mia_efficacy", "avg_gap")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device = {name!r} was asked for but this machine has no CUDA GPU; use device: cpu")
    return device


@dataclass
class Prepared:
    """What every epoch of a run reads: data on the device, the split, f_D, Retrain and their metrics."""
    cfg: UnlearnConfig
    device: torch.device
    data: ImageData
    split: ForgetSplit
    references: References
    split_path: Path
    original_metrics: dict[str, float] = field(default_factory=dict)
    retrain_metrics: dict[str, float] = field(default_factory=dict)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        metrics = evaluate(model, self.data, self.split, batch_size=self.cfg.eval_batch_size,
                           mia_samples=self.cfg.mia_samples, seed=self.cfg.seed)
        metrics["avg_gap"] = avg_gap(metrics, self.retrain_metrics) if self.retrain_metrics else 0.0
        return metrics


def prepare(cfg: UnlearnConfig, *, device: str | torch.device | None = None,
            cache_dir: str | Path | None = None, store: ReferenceStore | None = None) -> Prepared:
    """`store`: where f_D and Retrain live (a cluster's shared store); None = <cache>/references alone."""
    device = resolve_device(cfg.device) if device is None else torch.device(device)
    if device.type == "cpu":
        # Float32 and deterministic kernels on the CPU: a run is reproducible under its seed.
        torch.use_deterministic_algorithms(True, warn_only=True)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    data = load_data(cfg).to(device)
    split = make_split(cfg, data)
    split_path = split.save_parquet(cache / "splits" / f"{split.key()}.parquet")
    refs = reference_models(cfg, data, split, device=device, cache_dir=cache, store=store)
    prepared = Prepared(cfg, device, data, split, refs, split_path)
    prepared.retrain_metrics = prepared.evaluate(refs.retrain)
    prepared.original_metrics = prepared.evaluate(refs.original)
    return prepared


def epochs(prepared: Prepared, loop: MixUnlearn | None = None) -> Iterator[dict[str, float]]:
    """Train the remaining epochs of `loop` (a fresh one by default), yielding each epoch's metrics."""
    loop = loop or MixUnlearn(prepared.cfg, prepared.data, prepared.split,
                              original=prepared.references.original, device=prepared.device)
    while loop.epoch < prepared.cfg.epochs:
        epoch_seconds = loop.train_epoch()
        loop.unlearner.eval()
        metrics = prepared.evaluate(loop.unlearner)
        loop.unlearner.train()
        metrics.update(epoch=loop.epoch, epoch_seconds=epoch_seconds, unlearn_seconds=loop.seconds)
        metrics.update(getattr(loop, "diagnostics", dict)())   # a method's own per-epoch numbers (MixUnlearn: its masks, losses)
        yield metrics


@dataclass
class RunResult:
    cfg: UnlearnConfig
    rows: dict[str, dict[str, float]]   # "f_D", "Retrain", "MixUnlearn" -> metrics
    loop: MixUnlearn
    prepared: Prepared

    def table(self) -> str:
        return format_table(self.rows, title=f"{self.cfg.dataset} / {self.cfg.task} / {self.cfg.model} / "
                            f"targets {self.cfg.targets}; ASR attacker: {ATTACKER}")


def run(cfg: UnlearnConfig, *, device: str | torch.device | None = None, cache_dir: str | Path | None = None,
        progress: bool = False) -> RunResult:
    prepared = prepare(cfg, device=device, cache_dir=cache_dir)
    loop = MixUnlearn(cfg, prepared.data, prepared.split, original=prepared.references.original,
                      device=prepared.device)
    final: dict[str, float] = {}
    for final in epochs(prepared, loop):
        if progress:
            print(f"epoch {final['epoch']:>3}/{cfg.epochs}  avg_gap {final['avg_gap']:6.2f}  "
                  f"train_f {final['train_f']:6.2f}  ta {final['ta']:6.2f}  ({final['epoch_seconds']:.1f} s)",
                  flush=True)
    rows = {"f_D": prepared.original_metrics, "Retrain": prepared.retrain_metrics, "MixUnlearn": final}
    return RunResult(cfg, rows, loop, prepared)


def format_table(rows: dict[str, dict[str, float]], *, title: str = "") -> str:
    columns = [c for c in COLUMNS if any(c in r for r in rows.values())]
    extra = [c for c in ("unlearn_seconds",) if any(c in r for r in rows.values())]
    head = f"{'':<12}" + "".join(f"{c:>14}" for c in columns + extra)
    lines = [title] if title else []
    lines += [head, "-" * len(head)]
    for name, metrics in rows.items():
        cells = "".join(f"{_cell(metrics.get(c)):>14}" for c in columns + extra)
        lines.append(f"{name:<12}{cells}")
    lines.append("accuracies and rates in %; closer to Retrain is better; avg_gap = mean |UA, RA, TA, "
                 "MIA-Efficacy - Retrain's|")
    return os.linesep.join(lines)


def _cell(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2f}"
