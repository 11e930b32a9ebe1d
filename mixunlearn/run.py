"""One unlearning run end to end: data -> split -> reference models -> a method's loop -> metrics table.

    from mixunlearn import UnlearnConfig, run
    result = run(UnlearnConfig(dataset="fashion_mnist", task="class", forget_class=0))
    print(result.table())

The method is cfg.method (MixUnlearn by default; mixunlearn.methods.METHODS lists them all).
`prepare` does everything that does not change during unlearning (and is shared by every trial of a
sweep through the reference store: f_D, Retrain and their metrics); `epochs` yields after every epoch
so that a caller (a Ray Tune trainable, a notebook) can report and checkpoint; `run` is the thin plain
entry point.

Evaluation after an epoch is one forward pass per sample set; the accuracies (UA, RA, TA) come from it
at once, the CPU attackers (MIA-Efficacy, ASR, and so avg_gap) only at the `attack_epochs` a caller
names (a sweep: ASHA's rungs) and at the last epoch. On a GPU, `evaluated_epochs` also runs them in a
background thread while training goes on, and hands the epoch over when they are done: same numbers,
the attackers off the critical path.
"""
from __future__ import annotations

import copy
import sys
import time
from collections import deque
from collections.abc import Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import UnlearnConfig
from .data import ImageData, default_cache_dir, load_data
from .metrics import ATTACKER, Outputs, accuracies, attacks, avg_gap, du_objective, model_outputs
from .reference import References, reference_models, tensor_digest
from .reference_store import ReferenceStore
from .tasks import ForgetSplit, make_split
from .methods import METHODS, build_method
from .table import format_table

# Bump when a change to metrics.py or to Prepared.evaluate changes the numbers of the same references:
# the stored reference metrics of the old format are then never read.
METRICS_FORMAT = 2   # 2: attackers seeded by eval_seed, averaged over attack_draws


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
    judge: Any = None   # cfg.judge_models > 0: the pool's OracleGaussians (mixunlearn/judge/objective.py)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Every metric of `model`, avg_gap included (0 while Retrain's own metrics are being computed)."""
        outputs = self.outputs(model)
        return self.attack(outputs, self.accuracies(outputs))

    def outputs(self, model: torch.nn.Module) -> Outputs:
        """The one forward pass per sample set that the metrics below derive from."""
        return model_outputs(model, self.data, batch_size=self.cfg.eval_batch_size)

    def accuracies(self, outputs: Outputs) -> dict[str, float]:
        return accuracies(outputs, self.data, self.split)

    def attack(self, outputs: Outputs, accuracy_metrics: dict[str, float]) -> dict[str, float]:
        """accuracy_metrics + mia_efficacy, asr, avg_gap and Deep Unlearn's objective (metrics.DU_METRICS).
        Touches no model or tensor: thread-safe."""
        metrics = {**accuracy_metrics, **attacks(outputs, self.data, self.split, mia_samples=self.cfg.mia_samples,
                                                 seed=self.cfg.eval_seed, draws=self.cfg.attack_draws)}
        metrics["avg_gap"] = avg_gap(metrics, self.retrain_metrics) if self.retrain_metrics else 0.0
        metrics.update(du_objective(metrics, self.retrain_metrics))
        if self.judge is not None and outputs.train_logits is not None:
            metrics["oracle_nll"] = self.judge.nll(self.margins(outputs))
        return metrics

    def margins(self, outputs: Outputs) -> Any:
        """The true-class margin over every training point (split.train_labels) then every test point."""
        import numpy as np

        from .judge.margins import true_class_margin
        return np.concatenate([true_class_margin(outputs.train_logits, self.split.train_labels.cpu().numpy()),
                               true_class_margin(outputs.test_logits, self.data.test_labels.cpu().numpy())])


def deterministic_kernels() -> None:
    """torch.use_deterministic_algorithms(True, warn_only=True), without its import of torch._inductor to set
    inductor's own flag (1.4 s of a fresh trial process): nothing here is compiled."""
    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if set_flag is None or "torch._inductor.config" in sys.modules:   # another torch, or inductor in use
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        set_flag(True, warn_only=True)


def prepare(cfg: UnlearnConfig, *, device: str | torch.device | None = None,
            cache_dir: str | Path | None = None, store: ReferenceStore | None = None) -> Prepared:
    """The data on the device, the forget split, f_D, Retrain and their metrics: what every epoch reads.

    Args:
        device: None = cfg.device ("auto": CUDA if there is a GPU).
        cache_dir: the data, split and reference cache; None = data.default_cache_dir().
        store: where f_D, Retrain and their metrics live (a cluster's shared store and its lock);
            None = ReferenceStore(<cache>/references), this machine alone.

    f_D's and Retrain's metrics are evaluated once per content (`reference_metrics_inputs`: the models'
    sha256, the data, the split, the evaluation settings, the device type) and stored beside the models;
    every later prepare() that shares the store reads them back, the same numbers bit for bit.
    """
    device = resolve_device(cfg.device) if device is None else torch.device(device)
    if device.type == "cpu":
        deterministic_kernels()   # float32 and deterministic kernels: a CPU run is reproducible under its seed
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if store is None:
        store = ReferenceStore(cache / "references")
    data = load_data(cfg).to(device)
    split = make_split(cfg, data)
    split_path = split.save_parquet(cache / "splits" / f"{split.key()}.parquet")
    refs = reference_models(cfg, data, split, device=device, store=store)
    prepared = Prepared(cfg, device, data, split, refs, split_path)

    def evaluate_references() -> dict[str, dict[str, float]]:
        # Retrain first, while there are no Retrain metrics (its own avg_gap and DU gaps are 0), then f_D
        # judged against Retrain's.
        prepared.retrain_metrics = prepared.evaluate(refs.retrain)
        return {"retrain": prepared.retrain_metrics, "original": prepared.evaluate(refs.original)}

    stored = store.metrics(reference_metrics_inputs(prepared), evaluate_references, about={"device": str(device)})
    prepared.retrain_metrics, prepared.original_metrics = stored["retrain"], stored["original"]
    if cfg.judge_models:
        prepared.judge = oracle_judge(prepared, store)
    return prepared


def oracle_judge(prepared: Prepared, store: ReferenceStore) -> Any:
    """The oracle Gaussians of cfg.judge_models oracles of the audit pool: read from the store, where an audit
    or a benchmark has trained them; a missing oracle is trained here, once per cluster under the store's lock."""
    from .judge.audit import groups
    from .judge.objective import oracle_gaussians
    from .judge.pool import Pool

    cfg = prepared.cfg
    pool = Pool(cfg, prepared.data, prepared.split, store, models=cfg.judge_models)
    for job in pool.oracles():
        pool.run(job, device=prepared.device)
    points = groups(prepared.split, n_test=len(prepared.data.test_labels), seed=cfg.eval_seed)
    return oracle_gaussians(pool.margins(pool.oracles()), points)


def reference_metrics_inputs(prepared: Prepared) -> dict[str, Any]:
    """Everything f_D's and Retrain's metrics depend on: the key of their record in the reference store."""
    cfg, split, refs = prepared.cfg, prepared.split, prepared.references
    return {
        "format": METRICS_FORMAT,
        "original_sha256": refs.original_sha256,
        "retrain_sha256": refs.retrain_sha256,
        "model": cfg.model,                         # the architecture the weights run in
        "data": prepared.data.fingerprint,
        # The split's content, which accuracies() and attacks() read, rather than the spec that drew it.
        "forget_idx": tensor_digest(split.forget_idx),
        "retain_idx": tensor_digest(split.retain_idx),
        "train_labels": tensor_digest(split.train_labels),
        "forget_classes": list(split.forget_classes),
        "mia_samples": cfg.mia_samples,
        "attack_seed": cfg.eval_seed,               # the attackers' draws and their classifiers' seeds
        "attack_draws": cfg.attack_draws,
        "eval_batch_size": cfg.eval_batch_size,     # batches of 7 and of 1024 round the CPU's softmax apart
        "attacker": ATTACKER,                       # XGBoost or scikit-learn's substitute: another ASR
        "device_type": prepared.device.type,        # CUDA evaluates in bf16 autocast: other numbers than the CPU
    }


def epochs(prepared: Prepared, loop: Any = None, *,
           attack_epochs: Collection[int] | None = None) -> Iterator[dict[str, float]]:
    """Train the remaining epochs of `loop` (a fresh one by default), yielding each epoch's metrics.

    The attackers (mia_efficacy, asr, avg_gap) run at `attack_epochs` and the last epoch; None = every
    epoch. Each epoch is yielded as soon as it is evaluated, before the next one trains.
    """
    for epoch in evaluated_epochs(prepared, loop, attack_epochs=attack_epochs, background=False):
        yield epoch.metrics


@dataclass
class Epoch:
    """One evaluated epoch: its metrics and, for an attack epoch the loop has trained past, its exact state."""
    metrics: dict[str, float]
    # loop.state_dict() as of this epoch, kept for an epoch whose attackers ran in the background (its
    # checkpoint); None = the loop's current state, or an epoch without attackers (nothing checkpoints it).
    state: dict[str, Any] | None = None


@dataclass
class Waiting:
    """An epoch evaluated but not yet handed over: an attack epoch whose attackers still run, or one behind it."""
    epoch: Epoch
    attacks: Future | None = None   # the background attackers' metrics (accuracies included)

    def ready(self) -> bool:
        return self.attacks is None or self.attacks.done()

    def result(self) -> Epoch:
        return Epoch(self.attacks.result(), self.epoch.state) if self.attacks is not None else self.epoch


@dataclass
class CurveBudget:
    """Which epochs between the attack epochs get their accuracies, a forward pass over every sample set.

    Only the curves in the run's history read those epochs (ASHA reads the attack epochs, the results the
    last), and the pass can cost as much as an epoch: on one CPU core the quick preset's pass over
    D and the test set (3,500 images) takes about as long as its unlearning epoch (250 pairs). So an
    epoch gets one only while the passes spent on such epochs, this one included, stay within `share`
    of the training time so far; the latest pass's time (an attack epoch's counts) estimates the next,
    and until one is timed the next is taken (so the total is at most `share` of it plus one pass).
    Which epochs fit depends on the machine's speed; the numbers at an epoch that gets a pass do not.
    """
    share: float
    training_s: float = 0.0   # the loop's epoch seconds so far
    spent_s: float = 0.0      # the passes of epochs between attack epochs, so far
    pass_s: float = 0.0       # the latest pass; 0 until one is timed (the first is then taken, and timed)

    def trained(self, seconds: float) -> None:
        self.training_s += seconds

    def allows_one(self) -> bool:
        return self.share > 0 and self.spent_s + self.pass_s <= self.share * self.training_s

    def timed(self, seconds: float, *, curve: bool) -> None:
        self.pass_s = seconds
        if curve:
            self.spent_s += seconds


def evaluated_epochs(prepared: Prepared, loop: Any = None, *, attack_epochs: Collection[int] | None = None,
                     curve_budget: float | None = None, background: bool | None = None) -> Iterator[Epoch]:
    """epochs(), with each non-final attack epoch's attackers run in a background thread while training
    goes on (background=True). Such an epoch is handed over, with a copy of its state (its checkpoint),
    once its attackers are done: training never waits for them, however long they take, and the epochs
    trained meanwhile wait behind it, so epochs come in order. The last epoch is evaluated in full, and
    every earlier one handed over, before the generator ends. The metrics are those of
    `Prepared.evaluate` at the same epoch, bit for bit.

    curve_budget: with attack_epochs, the share of the training time the accuracies of the other epochs
    may take (CurveBudget); an epoch without them still hands over its epoch, seconds and the loop's
    diagnostics. None = every epoch gets its accuracies.

    background=None: only on a GPU, where the CPU idles while the epoch trains. On the CPU the attackers
    (scikit-learn's OpenMP threads) would compete with the training for the trial's cores: measured on
    2 cores, the quick preset's loop took 1.7-2.5x as long with them in the background.
    """
    loop = loop or build_method(prepared.cfg, prepared.data, prepared.split,
                                original=prepared.references.original, device=prepared.device)
    if background is None:
        background = prepared.device.type == "cuda"
    last = loop.epochs
    budget = CurveBudget(curve_budget) if curve_budget is not None else None
    attackers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mixunlearn-attackers") if background else None
    waiting: deque[Waiting] = deque()   # evaluated epochs, in order, not yet handed over
    try:
        while loop.epoch < last:
            epoch_seconds = loop.train_epoch()
            metrics = {"epoch": loop.epoch, "epoch_seconds": epoch_seconds, "unlearn_seconds": loop.seconds,
                       **getattr(loop, "diagnostics", dict)()}   # a method's own numbers (MixUnlearn: masks, losses)
            attack = attack_epochs is None or loop.epoch in attack_epochs or loop.epoch == last
            if budget is not None:
                budget.trained(epoch_seconds)
            if attack or budget is None or budget.allows_one():
                started = time.perf_counter()
                outputs = prepared.outputs(loop.model)
                metrics = {**prepared.accuracies(outputs), **metrics}
                if budget is not None:
                    budget.timed(time.perf_counter() - started, curve=not attack)
            if not attack:
                waiting.append(Waiting(Epoch(metrics)))
            elif attackers is None or loop.epoch == last:
                waiting.append(Waiting(Epoch(prepared.attack(outputs, metrics))))
            else:
                waiting.append(Waiting(Epoch(metrics, copy.deepcopy(loop.state_dict())),
                                       attackers.submit(prepared.attack, outputs, metrics)))
            while waiting and (waiting[0].ready() or loop.epoch == last):
                yield waiting.popleft().result()
    finally:
        if attackers is not None:
            attackers.shutdown(wait=True, cancel_futures=True)


@dataclass
class RunResult:
    cfg: UnlearnConfig
    rows: dict[str, dict[str, float]]   # "f_D", "Retrain", the method's title -> metrics
    loop: Any
    prepared: Prepared

    def table(self) -> str:
        return format_table(self.rows, title=f"{self.cfg.dataset} / {self.cfg.task} / {self.cfg.model} / "
                            f"targets {self.cfg.targets}; ASR attacker: {ATTACKER}")


def run(cfg: UnlearnConfig, *, device: str | torch.device | None = None, cache_dir: str | Path | None = None,
        progress: bool = False) -> RunResult:
    prepared = prepare(cfg, device=device, cache_dir=cache_dir)
    loop = build_method(cfg, prepared.data, prepared.split, original=prepared.references.original,
                        device=prepared.device)
    final: dict[str, float] = {}
    for final in epochs(prepared, loop):
        if progress:
            print(f"epoch {final['epoch']:>3}/{loop.epochs}  avg_gap {final['avg_gap']:6.2f}  "
                  f"train_f {final['train_f']:6.2f}  ta {final['ta']:6.2f}  ({final['epoch_seconds']:.1f} s)",
                  flush=True)
    rows = {"f_D": prepared.original_metrics, "Retrain": prepared.retrain_metrics, METHODS[cfg.method].title: final}
    return RunResult(cfg, rows, loop, prepared)
