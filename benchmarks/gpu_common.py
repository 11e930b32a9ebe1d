"""What the parts of the GPU check share: their workloads on a GPU and in the CPU rehearsal, a part's
JSON record, the paper track's configs, and the CPU stand-in for the CUDA path's bf16 autocast.

Imports torch only inside functions: the runner (gpu_check.py) and the setup part load this module
before anything says whether the image's torch works.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAPER_SPACE = ROOT / "search_spaces" / "paper.yaml"


@dataclass(frozen=True)
class Settings:
    """One mode's workloads. GPU: sized so that all six parts fit the 8 minutes on one H100 (GPU.md's
    rates); rehearsal: the same code on a tiny CIFAR-10 subset with tiny step counts, on the CPU."""
    mode: str                              # "gpu" or "rehearsal"
    budget_s: float                        # the runner's whole run, setup included
    caps_s: dict[str, float]               # each part's own cap; forgetting gets what is left
    forgetting_min_s: float                # part 6 starts only with this much left
    torch_threads: int                     # 0 = torch's default
    # part 2: every method, one epoch each (two on the GPU: the first warms up, the second is timed)
    methods_train_subset: int              # CIFAR-10 images per class
    methods_epochs: int
    max_batch: int                         # every batch size capped at this (0 = the paper track's own)
    plain_steps: int                       # plain cross-entropy steps timed per batch size
    # part 3: MixUnlearn's loop against GPU.md's prototype (random images, as the prototype had)
    anchor_batches: tuple[int, ...]
    anchor_steps: tuple[int, ...]
    anchor_repeats: int
    # part 4: one trial by the real schedule
    evaluation: dict[str, Any]             # fields over the paper track's base
    evaluation_grace: int                  # ASHA's grace period: attack epochs grace * 2^k and the last
    # part 5: concurrent trial processes on one GPU
    packing_counts: tuple[int, ...]
    packing_batch: int
    packing_steps: int
    # part 6: real forgetting, cut to the time left
    forgetting: dict[str, Any] = field(default_factory=dict)   # fields over the paper track's base
    forgetting_max: dict[str, int] = field(default_factory=dict)  # upper bounds of the cut


GPU = Settings(
    mode="gpu", budget_s=450.0,
    caps_s={"setup": 60, "methods": 120, "anchor": 50, "evaluation": 150, "packing": 110},
    forgetting_min_s=75, torch_threads=0,
    methods_train_subset=1000, methods_epochs=2, max_batch=0, plain_steps=60,
    anchor_batches=(32, 512), anchor_steps=(150, 40), anchor_repeats=3,
    evaluation={"ref_epochs": 1, "epochs": 10}, evaluation_grace=5,
    packing_counts=(1, 2, 4, 8), packing_batch=32, packing_steps=150,
    forgetting={}, forgetting_max={"ref_epochs": 20, "mixunlearn_epochs": 40, "scrub_epochs": 5},
)

_TINY = {"train_subset": 3, "test_subset": 4, "ref_batch_size": 16, "mia_samples": 50, "eval_batch_size": 64}
# About 55 s of CPU in all (2 cores, torch 2.14): on an idle machine a minute or so. The caps leave a
# shared machine room; the budget keeps the whole under 3 minutes.
REHEARSAL = Settings(
    mode="rehearsal", budget_s=160.0,
    caps_s={"setup": 40, "methods": 75, "anchor": 40, "evaluation": 70, "packing": 60},
    forgetting_min_s=15, torch_threads=1,
    methods_train_subset=2, methods_epochs=1, max_batch=8, plain_steps=1,
    anchor_batches=(4,), anchor_steps=(1,), anchor_repeats=1,
    # 3 epochs, grace 2: epoch 1 between rungs (the curve budget decides), 2 a rung (background), 3 the last
    evaluation={**_TINY, "ref_epochs": 1, "epochs": 3, "batch_size": 4}, evaluation_grace=2,
    packing_counts=(1, 2), packing_batch=4, packing_steps=1,
    forgetting={**_TINY, "batch_size": 4}, forgetting_max={"ref_epochs": 1, "mixunlearn_epochs": 1, "scrub_epochs": 1},
)

MODES = {"gpu": GPU, "rehearsal": REHEARSAL}


# ---- a part's record ------------------------------------------------------------------------------------

def finite(value: Any) -> Any:
    """JSON without NaN or Infinity (which strict readers refuse): such a float becomes None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_json(path: Path, data: dict) -> None:
    """Written beside its final name and renamed: a part killed mid-write leaves the previous version."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(finite(data), indent=2, default=str) + "\n")
    os.replace(tmp, path)


class Record:
    """A part's JSON file under $OUT, rewritten at every step: what a part had measured survives it
    being stopped, failing or hanging (the runner then marks the status)."""

    def __init__(self, path: Path, **head: Any) -> None:
        self.path = path
        self.data: dict[str, Any] = {**head, "status": "running", "results": {}}
        self.save()

    def set(self, **values: Any) -> None:
        self.data.update(values)
        self.save()

    def result(self, key: str, value: Any) -> None:
        self.data["results"][key] = value
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---- the paper track ------------------------------------------------------------------------------------

def paper_config(method: str, **fields: Any):
    """search_spaces/paper.yaml's base (CIFAR-10, resnet18_cifar, class 0, label-agnostic, LAF's
    reference recipe) as `method`'s config, with `fields` over it: trial 1 of `mixsweep run paper/<method>`.
    Read with yaml alone: search_spaces imports Optuna, which the GPU image lacks."""
    import yaml

    from mixunlearn.config import UnlearnConfig

    base = yaml.safe_load(PAPER_SPACE.read_text())["base"]
    common = set(UnlearnConfig.common_fields())
    cfg = UnlearnConfig.from_dict(base).replace(method=method, **{k: v for k, v in fields.items() if k in common})
    own = {k: v for k, v in fields.items() if k not in common}
    return cfg.replace(**own) if own else cfg


def batch_fields(cfg) -> dict[str, int]:
    """The config's batch sizes (batch_size, forget_batch_size, vae_batch_size, ...), not eval_batch_size."""
    return {k: v for k, v in cfg.to_dict().items() if k.endswith("batch_size") and not k.startswith(("eval", "ref"))}


def capped(cfg, max_batch: int):
    """cfg with every batch size at most max_batch (0: unchanged)."""
    if not max_batch:
        return cfg
    over = {k: max_batch for k, v in batch_fields(cfg).items() if v > max_batch}
    return cfg.replace(**over) if over else cfg


# ---- the CUDA path on a CPU -----------------------------------------------------------------------------

BF16_REGIONS = [0]   # bf16 autocast regions entered under cuda_path_on_cpu(), since the process started


def cuda_path_on_cpu() -> None:
    """The rehearsal's stand-in for CUDA's bf16 autocast: every autocast region the code opens with
    dtype=bfloat16 (each is `enabled` only on CUDA) runs as an enabled CPU bf16 autocast instead, so
    the dtype mixes of the CUDA path (bf16 activations, float32 losses, bf16 feature caches read back)
    run here. Channels_last, fused optimisers and CUDA synchronisation stay GPU-only. Counted in
    BF16_REGIONS, so a rehearsal shows which code entered such a region."""
    import torch

    original = torch.autocast
    if getattr(original, "cuda_path_on_cpu", False):
        return

    class CudaPathAutocast(original):
        cuda_path_on_cpu = True

        def __init__(self, device_type: str, dtype=None, enabled: bool = True, cache_enabled=None) -> None:
            if dtype == torch.bfloat16:
                device_type, enabled = "cpu", True
                BF16_REGIONS[0] += 1
            super().__init__(device_type, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)

    torch.autocast = CudaPathAutocast


# ---- the machine ----------------------------------------------------------------------------------------

def part_device(ctx):
    """The device a part measures on, its start-up (the CUDA context) timed into the record's "process":
    CUDA on the GPU (a part fails at once where torch sees none), the CPU with cuda_path_on_cpu() in the
    rehearsal."""
    import torch

    started = time.perf_counter()
    if ctx.settings.torch_threads:
        torch.set_num_threads(ctx.settings.torch_threads)
    if ctx.rehearsal:
        cuda_path_on_cpu()
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        raise RuntimeError(f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False); "
                           "on a machine without a GPU, run `bash benchmarks/gpu_check.sh --rehearse`")
    else:
        device = torch.device("cuda")
        torch.zeros(1, device=device).sum().item()   # the CUDA context, timed here rather than in a figure
    ctx.record.set(device=device_info(device),
                   process={**ctx.record.data.get("process", {}), "device_init_s": seconds_since(started)})
    return device


def device_info(device) -> dict[str, Any]:
    """Device, torch, CUDA and cuDNN versions, and the card's name, memory and multiprocessors."""
    import platform

    import torch

    info: dict[str, Any] = {"device": str(device), "python": platform.python_version(), "torch": torch.__version__,
                            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                            "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count, capability=f"{props.major}.{props.minor}")
    return info


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None


def reset_peak_memory(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def seconds_since(start: float) -> float:
    return round(time.perf_counter() - start, 3)


def settings_dict(settings: Settings) -> dict[str, Any]:
    return asdict(settings)
