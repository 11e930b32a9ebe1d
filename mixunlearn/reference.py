"""The two reference models every run is judged by: f_D (trained on all of D) and Retrain (on D_r only).

    refs = reference_models(cfg, data, split, device=torch.device("cuda"))
    refs.original, refs.retrain        # eval mode, frozen, on the device

Both follow LAF's recipe (METHOD.md "Models"; cfg.ref_*: Adam, cross-entropy) and are trained once per
content: an entry (<cache>/references/<key>.json and its weights) is keyed by everything that determines the
weights — the data fingerprint, the labels trained on, for Retrain the retain indices, the model, the
recipe, the seed and the role. f_D does not depend on which samples are later forgotten, so every task
that keeps the true labels (class 0, class 3, data, random, ...) shares one f_D. Where entries live
(the local folder, or a store every node of a cluster shares behind a cluster-wide lock) is
reference_store.py's; `References` carries the sha256 of each model's tensors, the provenance every
run records. While a model trains, a progress line goes to stderr every few seconds.
"""
from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
import torch
import torch.nn.functional as F
from torch import nn

from mixunlearn.fields import CommonFields
from mixunlearn.data import ImageData, augment as augment_images, default_cache_dir
from mixunlearn.models import build_model
from mixunlearn.reference_store import ReferenceStore
from mixunlearn.tasks import ForgetSplit

# Bump when a change to the models or to train_classifier makes old cache entries wrong.
CACHE_FORMAT = 1
PROGRESS_EVERY_S = 5.0   # seconds between progress lines while a reference model trains


@dataclass
class References:
    original: nn.Module   # f_D, eval mode, requires_grad False, on device
    retrain: nn.Module    # Retrain, same
    original_path: Path   # the weights in the local folder
    retrain_path: Path
    original_sha256: str  # reference_store.state_sha256 of the weights: what every run records
    retrain_sha256: str


# ---- training --------------------------------------------------------------------------------------


def train_classifier(
    model: nn.Module,
    data: ImageData,
    indices: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    augment: bool,
    seed: int,
    device: torch.device | str,
    label: str | None = None,
) -> nn.Module:
    """Train `model` in place with Adam + cross-entropy on data.train_images[indices]; return it in eval mode.

    Args:
        indices: int64 positions into data.train_images to train on (any device).
        labels: int64 labels of the WHOLE training set ([n], e.g. split.train_labels), read at `indices`.
        batch_size: the last batch of an epoch may be smaller (nothing is dropped).
        weight_decay: Adam's L2 term (torch.optim.Adam, as LAF), not AdamW's decoupled decay.
        augment: random crop + flip (data.augment) on each batch before normalising.
        seed: the shuffle order; drawn on the CPU so every device sees the same order.
        label: with a name ("f_D"), a line "<label>: epoch k/N, batch b/B, s s" to stderr every
            PROGRESS_EVERY_S seconds and one when done.

    The images stay on the device as uint8; a batch is an index gather, so there is no DataLoader and no
    per-sample Python. On CUDA the step runs in bf16 autocast with channels_last; on CPU in float32.
    """
    device = torch.device(device)
    assert labels.shape[0] == data.train_images.shape[0], "labels must cover the whole training set"
    data = data.to(device)
    indices = indices.to(device)
    labels = labels.to(device)
    cuda = device.type == "cuda"
    memory_format = torch.channels_last if cuda else torch.contiguous_format

    model.to(device=device, memory_format=memory_format).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=cuda)
    shuffle = torch.Generator().manual_seed(seed)
    augmentation = torch.Generator(device=device).manual_seed(seed + 1)

    started = last_line = time.monotonic()
    batches = -(-len(indices) // batch_size)
    for epoch in range(epochs):
        order = indices[torch.randperm(len(indices), generator=shuffle).to(device)]
        for step, batch in enumerate(order.split(batch_size)):
            if label is not None and time.monotonic() - last_line >= PROGRESS_EVERY_S:
                last_line = time.monotonic()
                print(f"{label}: epoch {epoch + 1}/{epochs}, batch {step + 1}/{batches}, "
                      f"{last_line - started:.0f} s", file=sys.stderr, flush=True)
            images = data.train_images[batch]
            if augment:
                images = augment_images(images, augmentation)
            x = data.normalize(images).contiguous(memory_format=memory_format)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = F.cross_entropy(model(x), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if label is not None:
        print(f"{label}: trained, {epochs} epochs in {time.monotonic() - started:.1f} s on {device}",
              file=sys.stderr, flush=True)
    return model.eval()


# ---- the cache -------------------------------------------------------------------------------------


def reference_models(
    cfg: CommonFields,
    data: ImageData,
    split: ForgetSplit,
    *,
    device: torch.device | str,
    cache_dir: str | Path | None = None,
    store: ReferenceStore | None = None,
) -> References:
    """Load f_D and Retrain for (cfg, data, split) from the store, training each one the first time.

    Args:
        cache_dir: root of the local cache; None = data.default_cache_dir() ($MIXSWEEP_CACHE or
            ~/.cache/mixsweep). Entries live in <cache_dir>/references (reference_store.py's layout).
        store: where entries live instead (a cluster's shared store and its lock); None =
            ReferenceStore(<cache_dir>/references), this machine alone.

    Entries do not depend on the device that trained them: whichever process trains first (GPU or CPU)
    fills the entry, and everyone after loads it.
    """
    device = torch.device(device)
    if store is None:
        store = ReferenceStore(Path(cache_dir if cache_dir is not None else default_cache_dir()) / "references")
    data = data.to(device)
    about = {"device": str(device)}
    original = store.entry(reference_inputs(cfg, data, split, ORIGINAL, cfg.ref_seed),
                           reference_trainer(cfg, data, split, ORIGINAL, cfg.ref_seed, device), about=about)
    retrain = store.entry(reference_inputs(cfg, data, split, RETRAIN, cfg.ref_seed),
                          reference_trainer(cfg, data, split, RETRAIN, cfg.ref_seed, device), about=about)
    return References(
        original=load_frozen(fresh_model(cfg, data, cfg.ref_seed), original.path, device),
        retrain=load_frozen(fresh_model(cfg, data, cfg.ref_seed), retrain.path, device),
        original_path=original.path,
        retrain_path=retrain.path,
        original_sha256=original.sha256,
        retrain_sha256=retrain.sha256,
    )


# The two roles of a reference model: f_D on all of D, Retrain on D_r.
ORIGINAL = "original"
RETRAIN = "retrain"


def reference_inputs(cfg: CommonFields, data: ImageData, split: ForgetSplit, role: str, seed: int) -> dict:
    """The store key's inputs of the `role` model trained with `seed` (cfg's recipe otherwise): everything
    that determines its weights. With seed = cfg.ref_seed these are the references every run is judged by;
    an oracle pool (mixunlearn/judge/pool.py) holds the same entries for seeds 0..N-1, so its member of
    seed ref_seed is that very entry. The split itself is drawn with cfg.ref_seed whatever `seed` is."""
    assert role in (ORIGINAL, RETRAIN), role
    return {
        "format": CACHE_FORMAT,
        "data": data.fingerprint,
        "labels": tensor_digest(split.train_labels),
        "model": cfg.model,
        "ref_epochs": cfg.ref_epochs,
        "ref_batch_size": cfg.ref_batch_size,
        "ref_lr": cfg.ref_lr,
        "ref_weight_decay": cfg.ref_weight_decay,
        "ref_augment": cfg.ref_augment,
        "ref_seed": seed,
        "role": role,
        "indices": "all" if role == ORIGINAL else tensor_digest(split.retain_idx),
    }


def fresh_model(cfg: CommonFields, data: ImageData, seed: int) -> nn.Module:
    """The initial weights of a reference model of `seed`: the seed, not the RNG's history, so both roles
    and every loader start from the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(cfg.model, num_classes=data.num_classes, in_channels=data.in_channels,
                           image_size=data.image_size)


def reference_trainer(cfg: CommonFields, data: ImageData, split: ForgetSplit, role: str, seed: int,
                      device: torch.device | str) -> Callable[[], dict[str, torch.Tensor]]:
    """() -> the CPU state_dict of the `role` model of `seed`, trained with cfg's recipe (a store's train)."""
    indices = torch.arange(data.train_images.shape[0]) if role == ORIGINAL else split.retain_idx
    label = "f_D" if role == ORIGINAL else "Retrain"
    if seed != cfg.ref_seed:
        label += f" seed {seed}"

    def train() -> dict[str, torch.Tensor]:
        model = train_classifier(
            fresh_model(cfg, data, seed), data, indices, split.train_labels, epochs=cfg.ref_epochs,
            batch_size=cfg.ref_batch_size, lr=cfg.ref_lr, weight_decay=cfg.ref_weight_decay, augment=cfg.ref_augment,
            seed=seed, device=device, label=f"{label} ({cfg.model} on {cfg.dataset})")
        return {k: v.detach().to("cpu", memory_format=torch.contiguous_format) for k, v in model.state_dict().items()}
    return train


def load_frozen(model: nn.Module, path: Path, device: torch.device) -> nn.Module:
    model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return model.to(device).eval().requires_grad_(False)


# ---- helpers ---------------------------------------------------------------------------------------


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and values (device and layout do not matter)."""
    array = t.detach().cpu().contiguous().numpy()
    digest = hashlib.sha256(f"{array.dtype}{tuple(array.shape)}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()
