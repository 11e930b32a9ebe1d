"""Parts 2 and 3 of the GPU check: every method's CUDA path, and MixUnlearn's loop against GPU.md's anchor.

Part 2 (`methods`): each method of mixunlearn.methods.METHODS with the paper track's config (CIFAR-10,
resnet18_cifar, class 0, label-agnostic, the track's batch sizes) on a class-stratified CIFAR-10 subset,
f_D an untrained network of the right class (only speed and errors are measured). On the GPU two
epochs: the first carries the one-off work (cuDNN's first calls, LAF's VAEs), the second is timed.
Per method: optimiser steps/s, images/s (images forwarded with gradients), their ratio to plain
cross-entropy training of the same model at the same batch size, peak GPU memory, and whether any loss or
weight went NaN / Inf. A method that raises is recorded with its error and the next one runs.

Part 3 (`anchor`): unlearn_throughput's MixUnlearn loop and plain training on random images (as the
prototype measured them) at batch 32 and 512, against GPU.md's prototype step on an H100; and how far
bf16 autocast moves a fresh MixBlock's mask (DEVELOPERS.md: "keep MixBlock in float32").
"""
from __future__ import annotations

import statistics
import time

import torch

from gpu_common import (BF16_REGIONS, batch_fields, capped, paper_config, part_device, peak_memory_gib,
                        reset_peak_memory, seconds_since, sync)
from unlearn_throughput import mixunlearn_loop, mixunlearn_steps_per_s, plain_training_images_per_s, synthetic

# GPU.md, "A straightforward MixUnlearn unlearner step on the same H100" (2026-11-26, torch 2.11 + CUDA 13,
# bf16 autocast, eager): batch -> (plain training images/s, MixUnlearn pairs/s).
ANCHORS = {32: (3714, 2014), 128: (14697, 8573), 512: (51924, 17237)}
ANCHOR_CARD = "NVIDIA H100 80GB HBM3"


# ---- part 2 ---------------------------------------------------------------------------------------------

def methods(ctx) -> None:
    from mixunlearn.data import load_data
    from mixunlearn.methods import METHODS
    from mixunlearn.models import build_model
    from mixunlearn.tasks import make_split

    s = ctx.settings
    device = part_device(ctx)
    base = paper_config("mixunlearn", train_subset=s.methods_train_subset, test_subset=1)
    data = load_data(base).to(device)
    split = make_split(base, data)
    torch.manual_seed(0)
    original = build_model(base.model, num_classes=data.num_classes, in_channels=data.in_channels,
                           image_size=data.image_size).to(device).eval().requires_grad_(False)
    ctx.record.set(workload={"dataset": base.dataset, "model": base.model, "task": base.task,
                             "forget_class": base.forget_class, "targets": base.targets,
                             "train_images": len(data.train_labels), "forget_set": len(split.forget_idx),
                             "epochs_per_method": s.methods_epochs, "timed_epoch": s.methods_epochs,
                             "max_batch": s.max_batch or None, "f_D": "untrained (seed 0)"})
    plain: dict[int, float] = {}
    rows: list[dict] = []
    slowest = 0.0
    for name in METHODS:
        if ctx.left() < max(5.0, 1.5 * slowest):
            rows.append({"method": name, "status": "not run", "reason": f"the part's cap: {ctx.left():.0f} s left"})
            ctx.record.result("methods", rows)
            continue
        started = time.perf_counter()
        row = one_method(name, s, data, split, original, device)
        batch = row.get("batch_size")
        if row["status"] == "ok" and batch and ctx.left() > 5.0:
            if batch not in plain:
                plain[batch] = plain_training_images_per_s(base.model, data, batch, s.plain_steps, device,
                                                           warmup=0 if ctx.rehearsal else None)
            row["plain_images_per_s"] = plain[batch]
            row["ratio_to_plain"] = row["images_per_s"] / plain[batch]
        slowest = max(slowest, time.perf_counter() - started)
        rows.append(row)
        ctx.record.result("methods", rows)
        ctx.record.result("plain_images_per_s", {str(k): v for k, v in plain.items()})
        print(line(row), flush=True)
    # A NaN is a finding, recorded per method (GA on an untrained f_D may diverge by design); an error or a
    # method that did not run fails the part.
    broken = [r["method"] for r in rows if r["status"] != "ok"]
    if broken:
        raise RuntimeError(f"{len(broken)} of {len(rows)} methods failed or did not run: {', '.join(broken)}")


def one_method(name: str, s, data, split, original, device) -> dict:
    from mixunlearn.methods import METHODS, Diverged, build_method

    cfg = capped(paper_config(name, train_subset=s.methods_train_subset, test_subset=1), s.max_batch)
    if cfg.hyper.epochs < s.methods_epochs:
        cfg = cfg.replace(epochs=s.methods_epochs)
    row = {"method": name, "title": METHODS[name].title, "batch_size": cfg.to_dict().get("batch_size"),
           "batch_sizes": batch_fields(cfg), "status": "ok", "nan": False}
    reset_peak_memory(device)
    regions = BF16_REGIONS[0]
    started = time.perf_counter()
    try:
        loop = build_method(cfg, data, split, original=original, device=device)
        sync(device)
        row["build_s"] = seconds_since(started)
        epochs = []
        for _ in range(s.methods_epochs):
            steps, images = loop.steps, loop.images
            seconds = loop.train_epoch()
            epochs.append({"seconds": round(seconds, 4), "steps": loop.steps - steps, "images": loop.images - images})
        timed = epochs[-1]
        row.update(epochs=epochs, steps_per_s=timed["steps"] / timed["seconds"],
                   images_per_s=timed["images"] / timed["seconds"])
        row["nonfinite_weights"] = not all(torch.isfinite(t).all() for t in loop.model.state_dict().values()
                                           if t.is_floating_point())
        row["nan"] = row["nonfinite_weights"]
    except Diverged as diverged:
        row.update(nan=True, error=str(diverged))
    except Exception as exc:
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    row["peak_memory_gib"] = peak_memory_gib(device)
    row["bf16_regions_on_cpu"] = BF16_REGIONS[0] - regions if device.type == "cpu" else None
    row["seconds"] = seconds_since(started)
    return row


def line(row: dict) -> str:
    if row["status"] != "ok" or "images_per_s" not in row:
        return f"{row['method']:>19}: {row['status']}{' NaN' if row.get('nan') else ''} {row.get('error', '')}"
    ratio = f"{row['ratio_to_plain']:.3f}" if "ratio_to_plain" in row else "-"
    return (f"{row['method']:>19}: {row['steps_per_s']:8.2f} steps/s, {row['images_per_s']:9.1f} img/s "
            f"(batch {row['batch_size']}), ratio to plain {ratio}, peak {row['peak_memory_gib']} GiB"
            f"{', NaN' if row['nan'] else ''}")


# ---- part 3 ---------------------------------------------------------------------------------------------

def anchor(ctx) -> None:
    s = ctx.settings
    device = part_device(ctx)
    model = "resnet18_cifar"
    rows = []
    for batch, steps in zip(s.anchor_batches, s.anchor_steps):
        data = synthetic(model, batch * steps * 2 + 64, device)
        reset_peak_memory(device)
        plain = statistics.median(plain_training_images_per_s(model, data, batch, steps, device,
                                                              warmup=0 if ctx.rehearsal else None)
                                  for _ in range(s.anchor_repeats))
        unlearn = statistics.median(mixunlearn_steps_per_s(model, data, batch, steps, 4, device)
                                    for _ in range(s.anchor_repeats))
        anchor_plain, anchor_pairs = ANCHORS.get(batch, (None, None))
        row = {"batch": batch, "steps": steps, "repeats": s.anchor_repeats, "plain_images_per_s": plain,
               "pairs_per_s": unlearn * batch, "ratio": unlearn * batch / plain, "expected_ratio": 1 / (3 + 1 / 4),
               "anchor_pairs_per_s": anchor_pairs, "anchor_plain_images_per_s": anchor_plain,
               "pairs_vs_anchor": unlearn * batch / anchor_pairs if anchor_pairs else None,
               "plain_vs_anchor": plain / anchor_plain if anchor_plain else None,
               "peak_memory_gib": peak_memory_gib(device)}
        rows.append(row)
        ctx.record.result("rows", rows)
        print(f"batch {batch}: plain {plain:.1f} img/s, MixUnlearn {unlearn * batch:.1f} pairs/s "
              f"(anchor {anchor_pairs or '-'}), ratio {row['ratio']:.3f}", flush=True)
        del data
    ctx.record.result("anchor", {"card": ANCHOR_CARD, "source": "../shared/docs/GPU.md", "table": ANCHORS})
    ctx.record.result("mixblock_bf16", mixblock_precision(device, s.anchor_batches[0]))


def mixblock_precision(device, batch: int) -> dict:
    """A fresh generator's mask as MixUnlearn's loop computes it (f_D's cached features, bf16 on CUDA;
    G under the loop's bf16 autocast) against the same mask in float32 throughout: the mask's spatial
    structure (its within-image std) and the error bf16 puts on it."""
    from mixunlearn.mixblock import MixBlock

    data = synthetic("resnet18_cifar", 2 * batch + 64, device)
    loop = mixunlearn_loop("resnet18_cifar", data, batch, 1, 4, device)   # its features: the loop's own cache
    torch.manual_seed(0)
    generator = MixBlock(loop.original.feature_channels).to(device)
    f, r = torch.arange(batch, device=device), torch.arange(batch, device=device)
    lam = torch.rand(batch, device=device)
    with torch.no_grad():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=loop.cuda):
            as_run = generator(loop.forget_features[f], loop.retain_features[r], lam, data.image_size)[:, 0].float()
        x_f = data.normalize(data.train_images[loop.forget_idx[f]])
        x_r = data.normalize(data.train_images[loop.retain_idx[r]])
        reference = generator(loop.original.features(x_f).float(), loop.original.features(x_r).float(), lam,
                              data.image_size)[:, 0]
    spatial = reference.flatten(1).std(dim=1).mean().item()
    error = (as_run - reference).abs()
    return {"pairs": batch, "spatial_std_float32": spatial, "max_abs_error": error.max().item(),
            "mean_abs_error": error.mean().item(), "error_over_spatial_std": error.mean().item() / spatial,
            "features_dtype_in_cache": str(loop.forget_features.dtype).removeprefix("torch."),
            "note": "an error near or above the spatial std means bf16 erases the mask's spatial structure"}
