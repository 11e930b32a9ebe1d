"""How much of a trial's wall time goes to evaluation rather than unlearning, per epoch and per trial.

    python benchmarks/evaluation_share.py                       # quick preset + a small CIFAR-10 resnet18_cifar
    python benchmarks/evaluation_share.py --configs quick --label before   # e.g. from a checkout of the old code

One in-process run per config, as a trial of a sweep runs it (no Ray, no MLflow): prepare() with the
reference models already in the cache (a first, untimed prepare() puts them there, and where the code
stores their metrics, those too: a sweep evaluates them once per cluster), then every epoch of the loop.
- per epoch: (wall of the epoch loop - time inside train_epoch) / wall of the epoch loop, i.e. the
  time the loop is held up by evaluation, attackers waited for included, over all epochs;
- per trial: the same plus the time prepare() spent evaluating f_D and Retrain, over prepare + loop.
The code's own way is used, as found: with mixunlearn.run.evaluated_epochs the CPU attackers run at the
rungs of the sweep's ASHA (grace period x 2^k) and the last epoch (on a GPU in a background thread),
and where it takes a curve budget the other epochs get their accuracies within the sweep's
(sweep.curve_budget); without it (the code before issue 10) everything is evaluated after every epoch.
Run it from a checkout of the old code with PYTHONPATH to get the "before" figures of the same machine.
The last epoch's metrics are printed with a fingerprint, so two runs can be checked for the same
numbers. Each figure is one run; the JSON result in benchmarks/results/evaluation_share-<label>.json
names hardware, versions, load and the commit measured.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from mixunlearn.config import UnlearnConfig
from mixunlearn.run import Prepared, epochs, prepare
from mixunlearn.methods import MixUnlearn

try:
    from mixunlearn.run import evaluated_epochs
except ImportError:   # the code before issue 10: everything after every epoch
    evaluated_epochs = None

RESULTS = Path(__file__).resolve().parent / "results"
ASHA_REDUCTION = 2   # mixsweep.sweep.ASHA_REDUCTION (not imported: that module pulls in Ray)

# A CIFAR-10 track small enough for one CPU core: 20 training images per class (200, D_f = 20, so one
# unlearning step of 20 pairs per epoch) and 10 test images per class; the paper's model and mia_samples.
CIFAR = {"dataset": "cifar10", "train_subset": 20, "test_subset": 10, "task": "class", "forget_class": 0,
         "model": "resnet18_cifar", "ref_epochs": 1, "epochs": 4, "lr_unlearner": 1e-5, "mia_samples": 5000}


def config(name: str) -> tuple[UnlearnConfig, int, float | None]:
    """The config, its ASHA grace period and its curve budget (None where the code has none): the quick
    preset as shipped, or the CIFAR track above with the default sweep settings but a grace of 2.
    search_spaces (and Optuna with it) is imported here only: the GPU check measures without them."""
    from search_spaces import load_space, preset_path
    try:
        from search_spaces import SweepDefaults
    except ImportError:   # the code before issue 10 exports no sweep defaults (and has no curve budget)
        SweepDefaults = None
    if name == "quick":
        space = load_space(preset_path("quick"))
        return UnlearnConfig.from_dict(space.base), space.sweep.grace_epochs, getattr(space.sweep, "curve_budget", None)
    defaults = SweepDefaults() if SweepDefaults is not None else None
    return UnlearnConfig.from_dict(CIFAR), 2, getattr(defaults, "curve_budget", None)


def timed_reference_evaluations(prepare_call) -> tuple[object, float, int]:
    """prepare_call()'s result, and the seconds and number of Prepared.evaluate calls inside it (f_D's and
    Retrain's evaluations: two where the code evaluates them per prepare(), none where it reads them)."""
    evaluate = Prepared.evaluate
    spent = [0.0, 0]

    def timed(self, model):
        start = time.perf_counter()
        try:
            return evaluate(self, model)
        finally:
            spent[0] += time.perf_counter() - start
            spent[1] += 1
    Prepared.evaluate = timed
    try:
        return prepare_call(), spent[0], spent[1]
    finally:
        Prepared.evaluate = evaluate


def rungs(grace: int, max_t: int) -> list[int]:
    """ASHA's milestones, as mixsweep.sweep.asha_rungs computes them."""
    count = int(np.log(max_t / grace) / np.log(ASHA_REDUCTION) + 1)
    return [grace * ASHA_REDUCTION ** k for k in range(count)]


def measure(name: str, cache: Path | None) -> dict:
    cfg, grace, curve_budget = config(name)
    return measure_config(name, cfg, grace, curve_budget, cache)


def measure_config(name: str, cfg: UnlearnConfig, grace: int, curve_budget: float | None, cache: Path | None, *,
                   device: str | torch.device = "cpu", background: bool | None = None) -> dict:
    """One trial of `cfg` on `device`, as measure() describes. background: evaluated_epochs' own (None =
    on a GPU only); the GPU check's CPU rehearsal passes True to run the attackers' thread there too."""
    start = time.perf_counter()
    prepare(cfg, device=device, cache_dir=cache)                   # untimed: data decoded, references cached
    first_prepare_s = time.perf_counter() - start
    start = time.perf_counter()
    prepared, prepare_eval_s, reference_evaluations = timed_reference_evaluations(
        lambda: prepare(cfg, device=device, cache_dir=cache))
    prepare_s = time.perf_counter() - start

    loop = MixUnlearn(cfg, prepared.data, prepared.split, original=prepared.references.original, device=prepared.device)
    attack_at = rungs(grace, cfg.epochs)
    accuracies_at: list[int] = []
    start = time.perf_counter()
    if evaluated_epochs is not None:
        parameters = inspect.signature(evaluated_epochs).parameters
        budgeted = "curve_budget" in parameters and curve_budget is not None
        options = {"curve_budget": curve_budget} if budgeted else {}
        if background is not None and "background" in parameters:
            options["background"] = background
        in_background = background if background is not None else prepared.device.type == "cuda"
        history = [e.metrics for e in evaluated_epochs(prepared, loop, attack_epochs=attack_at, **options)]
        accuracies_at = [int(m["epoch"]) for m in history if "train_f" in m]
        way = (f"attackers at epochs {sorted({*attack_at, cfg.epochs})}"
               f"{' (in the background)' if in_background else ''}; accuracies at epochs "
               f"{accuracies_at}{f' (curve budget {curve_budget:g})' if budgeted else ''}")
    else:
        history = list(epochs(prepared, loop))
        way = "every metric after every epoch"
    loop_s = time.perf_counter() - start
    unlearn_s = loop.seconds
    last = {k: v for k, v in history[-1].items() if "seconds" not in k}
    parts = {}
    if hasattr(prepared, "outputs"):   # this change's pieces, timed once on the final model
        t0 = time.perf_counter()
        outputs = prepared.outputs(loop.unlearner)
        t1 = time.perf_counter()
        accuracy_metrics = prepared.accuracies(outputs)
        t2 = time.perf_counter()
        prepared.attack(outputs, accuracy_metrics)
        t3 = time.perf_counter()
        parts = {"forward_passes_s": round(t1 - t0, 3), "accuracies_s": round(t2 - t1, 4),
                 "attackers_s": round(t3 - t2, 3)}
    return {
        "config": name, "device": str(prepared.device), "model": cfg.model, "dataset": cfg.dataset,
        "train_images": len(prepared.data.train_labels),
        "test_images": len(prepared.data.test_labels), "forget_set": len(prepared.split.forget_idx),
        "epochs": cfg.epochs, "mia_samples": cfg.mia_samples, "evaluation": way,
        "unlearn_s_per_epoch": round(unlearn_s / cfg.epochs, 3),
        "evaluation_s_per_epoch": round((loop_s - unlearn_s) / cfg.epochs, 3),
        "evaluation_share_per_epoch": round((loop_s - unlearn_s) / loop_s, 3),
        "trial_s": round(prepare_s + loop_s, 2),
        "evaluation_share_per_trial": round((loop_s - unlearn_s + prepare_eval_s) / (prepare_s + loop_s), 3),
        "prepare_s": round(prepare_s, 2), "prepare_evaluation_s": round(prepare_eval_s, 2),
        "first_prepare_s": round(first_prepare_s, 2),   # references trained and evaluated: once per cluster
        "attack_epochs": sorted({*attack_at, cfg.epochs}), "accuracies_at": accuracies_at,
        "epoch_seconds": [round(m["epoch_seconds"], 3) for m in history],
        "reference_evaluations_in_prepare": reference_evaluations,
        "evaluation_parts_final_model": parts,
        "last_epoch": last,
        "last_epoch_sha256": hashlib.sha256(json.dumps(last, sort_keys=True).encode()).hexdigest()[:16],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["quick", "cifar"], choices=["quick", "cifar"])
    parser.add_argument("--label", default="after", help="names the result file: evaluation_share-<label>.json")
    parser.add_argument("--cache", type=Path, help="reference-model cache (default: $MIXSWEEP_CACHE or ~/.cache)")
    args = parser.parse_args()
    from code_version import code_measured
    from mixsweep.evidence import cpu_model, versions
    torch.set_num_threads(1)   # one trial = one CPU, as `mixsweep run --cpus-per-trial 1` runs it
    load_before = os.getloadavg()
    rows = [measure(name, args.cache) for name in args.configs]
    record = {
        "benchmark": "evaluation_share", "label": args.label,
        "hardware": {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": None}, "versions": versions(),
        "runs": 1, "torch_threads": 1, "device": "cpu", "code": code_measured(),
        "load_average_1_5_15_before": [round(x, 2) for x in load_before],
        "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        "results": rows, "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"evaluation_share-{args.label}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"evaluation share ({args.label}) | {record['hardware']['cpu']}, {record['hardware']['cores']} cores, CPU, "
          f"1 torch thread | {', '.join(f'{k} {v}' for k, v in record['versions'].items())} | 1 run each, "
          f"load avg {record['load_average_1_5_15_before']} -> {record['load_average_1_5_15_after']}")
    for row in rows:
        print(f"{row['config']:>6} ({row['model']}, {row['train_images']} train / {row['test_images']} test images, "
              f"{row['epochs']} epochs): unlearning {row['unlearn_s_per_epoch']:.3f} s/epoch, evaluation "
              f"{row['evaluation_s_per_epoch']:.3f} s/epoch = {100 * row['evaluation_share_per_epoch']:.0f}% per epoch, "
              f"{100 * row['evaluation_share_per_trial']:.0f}% per trial; {row['evaluation']}; last epoch "
              f"{row['last_epoch_sha256']} {row['evaluation_parts_final_model']}")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
