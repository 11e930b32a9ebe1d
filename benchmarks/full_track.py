"""One MixUnlearn run of the `full` CPU track, timed: unlearning and evaluation apart, epoch by epoch.

    python benchmarks/full_track.py                      # the full preset's base, 1 torch thread (a trial's)
    python benchmarks/full_track.py --variant gen_optimizer=sgd,lr_generator=0.1 --label sgd

The track (search_spaces/full.yaml): all of Fashion-MNIST, class 0 forgotten, label-agnostic, cnn_small,
f_D and Retrain from the shared reference cache (trained once: their time is the store's, reported when this
run had to train them). Every epoch: train_epoch() (unlearning), then the evaluation in its two parts,
timed apart: the accuracies (one forward pass over D and the test set), every epoch; the attackers
(MIA-Efficacy, ASR on mia_samples per side) at a sweep trial's epochs, ASHA's rungs and the last. Totals:
unlearning; evaluation as a sweep trial and a curve_budget plan's run pay it (the attackers at those epochs,
resp. the last only, the accuracies then); and, from the mean of the measured parts, what evaluating every
epoch whole would cost. G's steps and the mask diagnostics are kept per epoch: they sized the track.
Written to benchmarks/results/full_track-<label>.json with the hardware, load, versions and commit.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from code_version import code_measured
from mixsweep.evidence import cpu_model, versions
from mixunlearn.config import UnlearnConfig
from mixunlearn.methods import build_method
from mixunlearn.run import prepare
from search_spaces import load_space, preset_path

RESULTS = Path(__file__).resolve().parent / "results"
RUNGS = (1, 2, 4, 8)   # ASHA's rungs for the full preset's grace 1 and 11 epochs (mixsweep.sweep.asha_rungs)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a trial's CPUs)")
    parser.add_argument("--variant", default="", help="field=value,... over the preset's base")
    parser.add_argument("--label", default="cpu")
    parser.add_argument("--epochs", type=int, help="stop after this many epochs (default: the preset's)")
    parser.add_argument("--preset", default="full", help="another preset's base (a dry run: quick)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    changes = dict(item.split("=", 1) for item in args.variant.split(",") if item)
    base = load_space(preset_path(args.preset)).base
    cfg = UnlearnConfig.from_dict({**base, **changes, "device": "cpu"}, source="full_track")
    load_start = os.getloadavg()

    started = time.perf_counter()
    prepared = prepare(cfg, device="cpu")
    prepare_s = time.perf_counter() - started
    loop = build_method(cfg, prepared.data, prepared.split, original=prepared.references.original,
                        device=prepared.device)
    build_s = time.perf_counter() - started - prepare_s

    epochs = []
    last = args.epochs or loop.epochs
    while loop.epoch < last:
        unlearn_s = loop.train_epoch()
        t0 = time.perf_counter()
        outputs = prepared.outputs(loop.model)
        accuracies = prepared.accuracies(outputs)
        t1 = time.perf_counter()
        attacked = loop.epoch in RUNGS or loop.epoch == last
        metrics = prepared.attack(outputs, accuracies) if attacked else accuracies
        t2 = time.perf_counter()
        diagnostics = loop.diagnostics()
        epochs.append({"epoch": loop.epoch, "unlearn_s": round(unlearn_s, 2), "accuracies_s": round(t1 - t0, 2),
                       "attackers_s": round(t2 - t1, 2) if attacked else None, "f_U_steps": loop.steps,
                       "G_steps": getattr(loop, "generator_steps", None),
                       **{k: round(v, 4) for k, v in diagnostics.items()},
                       **{k: round(metrics[k], 2) for k in ("ua", "ra", "ta", "mia_efficacy", "asr", "test_r",
                                                            "test_f", "avg_gap") if k in metrics}})
        print(json.dumps(epochs[-1]), flush=True)

    unlearn = sum(e["unlearn_s"] for e in epochs)
    accuracies = sum(e["accuracies_s"] for e in epochs)
    attacked = [e for e in epochs if e["attackers_s"] is not None]
    attack_mean = sum(e["attackers_s"] for e in attacked) / len(attacked)
    accuracies_mean = accuracies / len(epochs)
    record = {
        "benchmark": "full_track", "label": args.label, "code": code_measured(), "runs": 1,
        "hardware": f"{os.cpu_count()} CPU, {cpu_model()}; torch threads {args.threads}",
        "load_average_start": [round(x, 1) for x in load_start],
        "load_average_end": [round(x, 1) for x in os.getloadavg()],
        "versions": versions(), "python": sys.version.split()[0],
        "config": cfg.to_dict(),
        "train_images": int(prepared.data.train_images.shape[0]), "test_images": int(prepared.data.test_images.shape[0]),
        "forget_images": len(prepared.split.forget_idx),
        "prepare_s": round(prepare_s, 1), "build_s": round(build_s, 1),
        "epochs": epochs,
        "totals": {
            "unlearning_s": round(unlearn, 1),
            "accuracies_per_epoch_s": round(accuracies_mean, 1), "attackers_per_epoch_s": round(attack_mean, 1),
            # a sweep trial (attackers and accuracies at the rungs and the last epoch, curve budget 0)
            "evaluation_sweep_s": round(sum(e["accuracies_s"] + e["attackers_s"] for e in attacked), 1),
            # a plan with curve_budget (the whole evaluation at the last epoch only, no curves)
            "evaluation_last_epoch_s": round(epochs[-1]["accuracies_s"] + epochs[-1]["attackers_s"], 1),
            # a plan without: every epoch whole (from the means above, not measured as such)
            "evaluation_every_epoch_s_estimated": round(len(epochs) * (accuracies_mean + attack_mean), 1),
            "prepare_and_build_s": round(prepare_s + build_s, 1),
        },
        "original_metrics": prepared.original_metrics, "retrain_metrics": prepared.retrain_metrics,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"full_track-{args.label}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["totals"]), f"\nwritten: {path}")


if __name__ == "__main__":
    main()
