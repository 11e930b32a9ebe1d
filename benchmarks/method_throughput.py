"""Every unlearning method's throughput against plain training of the same model, in one run on one device.

    python benchmarks/method_throughput.py                          # cnn_small, every method, auto device
    python benchmarks/method_throughput.py --models cnn_small resnet18_cifar --device cuda

For each method (mixunlearn.methods.METHODS, its default hyperparameters for the model's track):
unlearning optimiser steps/s over whole epochs, the images/s those steps train on (images forwarded
with gradients: NegGrad+ and LAF count both sides of a step, LAF both of its passes), and that over
plain cross-entropy training images/s at the method's batch size.
Frozen-f_D work a method does once (teacher logits, SalUn's mask, Boundary Shrink's labels, LAF's
embeddings) happens while it is built and is not timed; LAF's stage-0 VAEs train in the untimed
warm-up epoch. Data are random uint8 images on the device (throughput does not depend on content),
f_D is an untrained network, and D_f is the first tenth of the set. Each figure is the median of
--repeats timed epochs after one warm-up epoch, CUDA synchronised around each (Method.train_epoch).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from unlearn_throughput import SHAPES, environment, plain_training_images_per_s, synthetic  # noqa: E402

from mixunlearn.config import UnlearnConfig  # noqa: E402
from mixunlearn.methods import METHODS  # noqa: E402
from mixunlearn.models import build_model  # noqa: E402
from mixunlearn.tasks import ForgetSplit  # noqa: E402


def method_steps_per_s(name: str, model_name: str, n: int, repeats: int, device: torch.device) -> dict:
    data = synthetic(model_name, n, device)
    forget = torch.arange(n // 10)
    split = ForgetSplit(task="random", forget_idx=forget, retain_idx=torch.arange(n // 10, n),
                        train_labels=data.train_labels.cpu(), labelled=torch.ones(n, dtype=torch.bool),
                        forget_classes=(), fingerprint="synthetic", spec={})
    cfg = UnlearnConfig(model=model_name, targets="agnostic", ref_epochs=repeats + 1)
    torch.manual_seed(0)
    original = build_model(model_name, num_classes=10, in_channels=data.in_channels,
                           image_size=data.image_size).to(device).eval().requires_grad_(False)
    cls = METHODS[name]
    hyper = cls.default_hyper(cfg)
    hyper = dataclasses.replace(hyper, epochs=max(hyper.epochs, repeats + 1))   # enough epochs to time
    loop = cls(cfg, data, split, original=original, device=device, hyper=hyper)
    loop.train_epoch()                                   # warm-up: allocator, cuDNN, LAF's VAEs
    steps, images = [], []
    for _ in range(repeats):
        before_steps, before_images = loop.steps, loop.images
        seconds = loop.train_epoch()
        steps.append((loop.steps - before_steps) / seconds)
        images.append((loop.images - before_images) / seconds)
    return {"steps_per_s": statistics.median(steps), "images_per_s": statistics.median(images),
            "batch": hyper.batch_size,
            "steps_per_epoch": loop.steps // loop.epoch, "hyper": dataclasses.asdict(hyper)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn_small"], choices=sorted(SHAPES))
    parser.add_argument("--methods", nargs="+", default=sorted(METHODS), choices=sorted(METHODS))
    parser.add_argument("--images", type=int, default=0, help="training images (0 = by device and model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (0 = torch's default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)   # as run.prepare does on the CPU
    env = environment(device)
    env["load_average"] = os.getloadavg()
    print("environment:", json.dumps(env))
    rows = []
    for model_name in args.models:
        n = args.images or (20000 if device.type == "cuda" else (1280 if model_name == "cnn_small" else 160))
        plain: dict[int, float] = {}
        for name in args.methods:
            row = method_steps_per_s(name, model_name, n, args.repeats, device)
            batch = row["batch"]
            if batch not in plain:
                steps = max(4, min(40, n // batch))
                plain[batch] = statistics.median(
                    plain_training_images_per_s(model_name, synthetic(model_name, n, device), batch, steps, device)
                    for _ in range(args.repeats))
            images = row["images_per_s"]
            rows.append({"model": model_name, "method": name, "images": n, "repeats": args.repeats, **row,
                         "plain_images_per_s": plain[batch],
                         "ratio": images / plain[batch]})
            print(f"{model_name:>15} {name:>19}: {row['steps_per_s']:8.2f} steps/s (batch {batch:>3}), "
                  f"{images:8.1f} img/s | plain {plain[batch]:8.1f} img/s | ratio {images / plain[batch]:.3f} "
                  f"[median of {args.repeats}]", flush=True)
    env["load_average_after"] = os.getloadavg()
    out = args.out or Path(__file__).parent / "results" / f"method_throughput-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": env, "results": rows}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
