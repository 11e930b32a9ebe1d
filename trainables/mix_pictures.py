"""Pictures of the adversarial mixes: a PNG grid of (forget, retain, mask, mix) per pair, logged on the run.

    paths = log_mix_grids(client, run_id, loop, data, epoch=1)   # -> mix_grids/epoch001_generator.png, ...

A trial logs one grid from G's own mixes and one from the unlearner's (its detached mask on the
pairing pi of Eq. 5) at the first and the last epoch: the last step's first pairs of each
(MixUnlearn.mix_samples). Rows: the forget image, the retain image, the mask M[:,0] (the forget
side's share, on one colour scale from 0 to 1 with its bar), the mixed image. Column titles give the
pair's lambda and the mean forget share: with the mask at 0.5 whatever lambda is, the two disagree.
Images are de-normalised to [0, 1] pixels. Every grid has the same size in pixels (GRID_PIXELS), so
grids from different runs line up.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from mixunlearn.data import ImageData

ARTIFACT_FOLDER = "mix_grids"
DPI = 100
GRID_INCHES = (10.0, 5.6)                                    # 8 columns + the colour bar, 4 rows
GRID_PIXELS = (int(GRID_INCHES[0] * DPI), int(GRID_INCHES[1] * DPI))   # (width, height) of every PNG
KINDS = {"generator": "G's mixes (Eq. 3)", "unlearner": "f_U's mixes: G's detached mask on pi (Eq. 5)"}


def grid_name(epoch: int, kind: str) -> str:
    return f"epoch{epoch:03d}_{kind}.png"


def draw_grid(path: Path, samples: dict[str, torch.Tensor], *, mean: tuple[float, ...], std: tuple[float, ...],
              title: str) -> Path:
    """One PNG of GRID_PIXELS: a column per pair of `samples` (MixUnlearn.mix_samples()[kind])."""
    pixels = {name: denormalise(samples[name], mean, std) for name in ("forget", "retain", "mix")}
    share, lam = samples["forget_share"].float(), samples["lam"].float()
    columns = len(lam)
    fig = Figure(figsize=GRID_INCHES, dpi=DPI, layout="constrained")
    axes = fig.subplots(4, max(columns, 1), squeeze=False)
    shown = None
    for j in range(columns):
        axes[0, j].set_title(f"λ {lam[j]:.2f}\nM̄ {share[j].mean():.2f}", fontsize=8)
        for i, name in ((0, "forget"), (1, "retain"), (3, "mix")):
            show_image(axes[i, j], pixels[name][j])
        shown = axes[2, j].imshow(share[j].numpy(), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for i, label in enumerate(("forget x_f", "retain x_r", "mask M[:,0]", "mix x_mix")):
        axes[i, 0].set_ylabel(label, fontsize=8)
    if shown is not None:
        bar = fig.colorbar(shown, ax=axes[2, :].tolist(), shrink=0.9, pad=0.01)
        bar.set_label("forget share", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=DPI)   # no bbox "tight": the PNG keeps GRID_PIXELS exactly
    return path


def denormalise(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Normalised [k, C, H, W] back to [0, 1] pixels (ImageData.normalize inverted), [k, H, W, C]."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.float() * s + m).clamp(0.0, 1.0).permute(0, 2, 3, 1)


def show_image(ax, image: torch.Tensor) -> None:
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0].numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(image.numpy(), interpolation="nearest")


def log_mix_grids(mlflow_client: MlflowClient, run_id: str, loop, data: ImageData, *, epoch: int,
                  label: str = "") -> list[str]:
    """Draw and log this epoch's grids (one per kind of mix the loop kept); returns their artifact paths.
    A method without mixes (no mix_samples, or none kept) logs nothing."""
    samples = getattr(loop, "mix_samples", dict)()
    logged = []
    with tempfile.TemporaryDirectory(prefix="mixsweep-grids-") as tmp:
        for kind, parts in samples.items():
            path = draw_grid(Path(tmp) / grid_name(epoch, kind), parts, mean=data.mean, std=data.std,
                             title=f"{label}epoch {epoch}: {KINDS.get(kind, kind)}; last step's first pairs")
            mlflow_client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_FOLDER)
            logged.append(f"{ARTIFACT_FOLDER}/{path.name}")
    return logged
