"""MixUnlearn unlearner throughput against plain training of the same model, in one run on one device.

    python benchmarks/unlearn_throughput.py                       # cnn_small and resnet18_cifar, auto device
    python benchmarks/unlearn_throughput.py --models resnet18_cifar --batch-sizes 32 128 512 --device cuda

Cost model (issue 2): with f_D's outputs cached, one unlearner step runs three images per pair through
f_U (mix, retain, forget; forward + backward), and every K-th step the generator pushes one mixed image
per pair through f_T (forward + backward to the input). So one pair costs about 3 + 1/K training-image
equivalents, and pairs/s over plain images/s should be about 1 / (3 + 1/K) = 0.31 at K = 4.

Data are random uint8 images held on the device (throughput does not depend on their content); each
figure is the median of --repeats timed runs after a warm-up, with CUDA synchronised around them.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mixunlearn.config import UnlearnConfig
from mixunlearn.data import ImageData
from mixunlearn.models import build_model
from mixunlearn.tasks import ForgetSplit
from mixunlearn.methods import MixUnlearn

SHAPES = {"cnn_small": (1, 28), "resnet18_cifar": (3, 32)}


def synthetic(model_name: str, n: int, device: torch.device) -> ImageData:
    channels, size = SHAPES[model_name]
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=g)
    return ImageData(name="synthetic", train_images=images, train_labels=labels, test_images=images[:64],
                     test_labels=labels[:64], num_classes=10, mean=(0.5,) * channels, std=(0.25,) * channels,
                     fingerprint="synthetic", source="random").to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_training_images_per_s(model_name: str, data: ImageData, batch: int, steps: int, device, *,
                                warmup: int | None = None) -> float:
    """Cross-entropy Adam steps over device-resident batches: the same model, gather and normalisation.
    `warmup` untimed steps first (default max(2, steps // 5))."""
    cuda = device.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model = build_model(model_name, num_classes=10, in_channels=data.in_channels,
                        image_size=data.image_size).to(device, memory_format=fmt).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator(device=device).manual_seed(0)

    def run(k: int) -> None:
        for _ in range(k):
            idx = torch.randint(0, len(data.train_labels), (batch,), device=device, generator=g)
            x = data.normalize(data.train_images[idx]).contiguous(memory_format=fmt)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                loss = torch.nn.functional.cross_entropy(model(x).float(), data.train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run(max(2, steps // 5) if warmup is None else warmup)
    sync(device)
    start = time.perf_counter()
    run(steps)
    sync(device)
    return batch * steps / (time.perf_counter() - start)


def mixunlearn_steps_per_s(model_name: str, data: ImageData, batch: int, steps: int, gen_interval: int,
                           device) -> float:
    """Whole MixUnlearn epochs of exactly `steps` unlearner steps, the generator every K-th step."""
    loop = mixunlearn_loop(model_name, data, batch, steps, gen_interval, device)
    loop.train_epoch()                                     # warm-up: allocator, cuDNN autotuning
    return steps / loop.train_epoch()


def mixunlearn_loop(model_name: str, data: ImageData, batch: int, steps: int, gen_interval: int,
                    device) -> MixUnlearn:
    """A MixUnlearn loop whose epochs are exactly `steps` steps of `batch` pairs: D_f is the first
    batch * steps images, f_D an untrained network."""
    n = len(data.train_labels)
    split = ForgetSplit(task="random", forget_idx=torch.arange(batch * steps),
                        retain_idx=torch.arange(batch * steps, n), train_labels=data.train_labels.cpu(),
                        labelled=torch.ones(n, dtype=torch.bool), forget_classes=(), fingerprint="synthetic",
                        spec={})
    original = build_model(model_name, num_classes=10, in_channels=data.in_channels,
                           image_size=data.image_size).to(device).eval().requires_grad_(False)
    cfg = UnlearnConfig(model=model_name, batch_size=batch, gen_interval=gen_interval, epochs=100)
    return MixUnlearn(cfg, data, split, original=original, device=device)


def environment(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "device": str(device)}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                           if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn_small", "resnet18_cifar"], choices=sorted(SHAPES))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32])
    parser.add_argument("--gen-interval", type=int, default=4)
    parser.add_argument("--steps", type=int, default=0, help="steps per timed run (0 = by device and model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "unlearn_throughput.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    env = environment(device)
    print("environment:", json.dumps(env))
    expected = 1.0 / (3.0 + 1.0 / args.gen_interval)
    rows = []
    for model_name in args.models:
        for batch in args.batch_sizes:
            steps = args.steps or (200 if device.type == "cuda" else (40 if model_name == "cnn_small" else 4))
            data = synthetic(model_name, batch * steps * 2 + 64, device)
            plain = statistics.median(plain_training_images_per_s(model_name, data, batch, steps, device)
                                      for _ in range(args.repeats))
            unlearn = statistics.median(mixunlearn_steps_per_s(model_name, data, batch, steps, args.gen_interval,
                                                               device) for _ in range(args.repeats))
            ratio = unlearn * batch / plain
            rows.append({"model": model_name, "batch": batch, "steps_per_run": steps, "repeats": args.repeats,
                         "plain_images_per_s": plain, "unlearner_steps_per_s": unlearn,
                         "pairs_per_s": unlearn * batch, "ratio": ratio, "expected_ratio": expected})
            print(f"{model_name:>15} batch {batch:>4}: plain {plain:9.1f} img/s | MixUnlearn {unlearn:7.2f} steps/s "
                  f"= {unlearn * batch:9.1f} pairs/s | ratio {ratio:.3f} (cost model {expected:.3f}) "
                  f"[median of {args.repeats}]", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"environment": env, "results": rows}, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
