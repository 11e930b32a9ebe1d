"""Pictures of the adversarial mixes: a PNG grid of (forget, retain, mask, mix) per pair, logged on the run.

    paths = log_mix_grids(client, run_id, loop, data, epoch=1)   # -> mix_grids/epoch001_generator.png, ...

A trial logs one grid from G's own mixes and one from the unlearner's (its detached mask on the
pairing pi of Eq. 5) at the first and the last epoch: the last step's first pairs of each
(MixUnlearn.mix_samples). Rows: the forget image, the retain image, the mask M[:,0] (the forget
side's share, on one colour scale from 0 to 1 with its bar), the mixed image. Column titles give the
pair's lambda and the mean forget share: with the mask at 0.5 whatever lambda is, the two disagree.
Images are de-normalised to [0, 1] pixels. Every grid has the same size in pixels (GRID_PIXELS) and
the same layout for a given number of pairs whatever the image size, so grids from different runs
line up.

The grid is composed directly with numpy (the cells) and Pillow (text, frames, the PNG), with what every
grid of a size shares drawn once per process: it is drawn on the trial's critical path, where a plotting
library's figure, layout and savefig took longer than the unlearning epochs themselves.
"""
from __future__ import annotations

import functools
import importlib.util
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from mlflow.tracking import MlflowClient
from PIL import Image, ImageDraw, ImageFont

from mixunlearn.data import ImageData

ARTIFACT_FOLDER = "mix_grids"
GRID_PIXELS = (1000, 560)   # (width, height) of every PNG: 8 columns of ~100 px cells, 4 rows, the colour bar
KINDS = {"generator": "G's mixes (Eq. 3)", "unlearner": "f_U's mixes: G's detached mask on pi (Eq. 5)"}
ROWS = ("forget x_f", "retain x_r", "mask M[:,0]", "mix x_mix")
MASK_ROW = 2

# ---- layout, in pixels -------------------------------------------------------------------------------
MARGIN = 6          # around the page
TITLE_BAND = 26     # the title line
HEADER_BAND = 30    # a column's two header lines (lambda, mean share) above its first cell
LABEL_BAND = 22     # the rotated row labels left of the cells
BAR_BAND = 72       # right of the cells: gap, the colour bar, its ticks, tick labels and label
GAP = 8             # between cells
BAR_WIDTH = 12
FONT_PIXELS = {"title": 13, "header": 11, "label": 11, "bar": 10}   # 9 / 8 / 8 / 7 pt at 100 dpi: 8 headers fit
BACKGROUND, INK, FRAME = (255, 255, 255), (0, 0, 0), (0, 0, 0)

# Viridis every 1/32 (matplotlib's values; within 2 levels once interpolated): a trial need not import it (~0.2 s).
VIRIDIS_ANCHORS = ("440154 470d60 48186a 482374 472d7b 453681 424086 3f4989 3b528b 375a8d 33638d 2f6a8e "
                   "2c728e 297a8e 26818e 23898e 21908c 1f988b 1f9f88 21a685 28ae80 31b57b 3ebc74 4cc26c "
                   "5dc963 6ece58 82d34c 96d83f abdc32 c0df24 d5e21a eae51a fde725")


def viridis_table() -> np.ndarray:
    """[256, 3] uint8: entry i is viridis at i / 255."""
    anchors = np.array([[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in VIRIDIS_ANCHORS.split()], float)
    at = np.linspace(0.0, 1.0, len(anchors))
    wanted = np.linspace(0.0, 1.0, 256)
    return np.rint(np.stack([np.interp(wanted, at, anchors[:, c]) for c in range(3)], axis=1)).astype(np.uint8)


VIRIDIS = viridis_table()


class GridLayout(NamedTuple):
    """Where a grid's cells lie: square cells of `cell` pixels, the first at (left, top)."""
    columns: int
    cell: int
    left: int
    top: int

    def box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of one cell, right and bottom exclusive."""
        x, y = self.left + column * (self.cell + GAP), self.top + row * (self.cell + GAP)
        return x, y, x + self.cell, y + self.cell


def grid_layout(columns: int) -> GridLayout:
    """The biggest square cells that fit `columns` x 4 in GRID_PIXELS, the block centred on the page
    (labels and colour bar included) and below the title."""
    width, height = GRID_PIXELS
    room_w = width - 2 * MARGIN - LABEL_BAND - BAR_BAND
    room_h = height - TITLE_BAND - HEADER_BAND - MARGIN
    cell = min(room_w // max(columns, 1), room_h // len(ROWS)) - GAP
    block_w = columns * cell + (columns - 1) * GAP
    block_h = len(ROWS) * cell + (len(ROWS) - 1) * GAP
    left = (width - LABEL_BAND - block_w - BAR_BAND) // 2 + LABEL_BAND
    top = TITLE_BAND + (height - TITLE_BAND - MARGIN - HEADER_BAND - block_h) // 2 + HEADER_BAND
    return GridLayout(columns, cell, left, top)


def grid_name(epoch: int, kind: str) -> str:
    return f"epoch{epoch:03d}_{kind}.png"


def draw_grid(path: Path, samples: dict[str, torch.Tensor], *, mean: tuple[float, ...], std: tuple[float, ...],
              title: str) -> Path:
    """One PNG of GRID_PIXELS: a column per pair of `samples` (MixUnlearn.mix_samples()[kind]); no pairs
    gives the title alone on a page of the same size."""
    share, lam = samples["forget_share"].float(), samples["lam"].float()
    columns = len(lam)
    layout = grid_layout(columns)
    page = furniture(columns).copy()
    if columns:
        mask = VIRIDIS[np.rint(share.clamp(0.0, 1.0).numpy() * 255).astype(np.intp)]
        rows = [to_rgb(denormalise(samples[name], mean, std)) for name in ("forget", "retain")]
        rows = np.stack([*rows, mask, to_rgb(denormalise(samples["mix"], mean, std))])   # [4, k, H, W, 3]
        assert rows.shape[1] == columns, (rows.shape, columns)
        cells = upscale(rows, layout.cell)
        for i in range(len(ROWS)):
            for j in range(columns):
                x0, y0, x1, y1 = layout.box(i, j)
                page[y0:y1, x0:x1] = cells[i, j]
    image = Image.fromarray(page)
    put_text(image, (GRID_PIXELS[0] // 2, MARGIN + FONT_PIXELS["title"] // 2 + 2), title, "title")
    line = FONT_PIXELS["header"] + 3
    for j, (lam_j, mean_share) in enumerate(zip(lam.tolist(), share.mean(dim=(1, 2)).tolist())):
        x0, y0, x1, _ = layout.box(0, j)
        put_text(image, ((x0 + x1) // 2, y0 - 4 - line - line // 2), f"λ {lam_j:.2f}", "header")
        put_text(image, ((x0 + x1) // 2, y0 - 4 - line // 2), f"M̄ {mean_share:.2f}", "header")
    image.save(path, format="PNG", compress_level=1)   # ~1.5x faster than the default 6; files 10-20% bigger
    return path


def denormalise(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Normalised [k, C, H, W] back to [0, 1] pixels (ImageData.normalize inverted), [k, H, W, C]."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.float() * s + m).clamp(0.0, 1.0).permute(0, 2, 3, 1)


def to_rgb(pixels: torch.Tensor) -> np.ndarray:
    """[k, H, W, C] in [0, 1] to [k, H, W, 3] uint8: one channel shown as grey, three as RGB."""
    levels = np.rint(pixels.numpy() * 255).astype(np.uint8)
    return np.repeat(levels, 3, axis=-1) if levels.shape[-1] == 1 else levels


def upscale(images: np.ndarray, size: int) -> np.ndarray:
    """[..., H, W, 3] to [..., size, size, 3] by nearest neighbour (each cell pixel takes the source pixel
    under its centre), so the images' own pixels stay visible as blocks."""
    height, width = images.shape[-3:-1]
    rows = ((np.arange(size) + 0.5) * height / size).astype(np.intp)
    cols = ((np.arange(size) + 0.5) * width / size).astype(np.intp)
    return images.take(rows, axis=-3).take(cols, axis=-2)


# ---- what every grid of a size shares: frames, row labels, the colour bar; and the text ---------------

@functools.lru_cache(maxsize=None)
def furniture(columns: int) -> np.ndarray:
    """The page of a grid of `columns` pairs before its pictures, headers and title ([H, W, 3] uint8,
    read-only): drawn once per process, as it is the same for every grid of that size."""
    image = Image.new("RGB", GRID_PIXELS, BACKGROUND)
    if columns:
        layout = grid_layout(columns)
        draw = ImageDraw.Draw(image)
        for i, label in enumerate(ROWS):
            for j in range(columns):
                x0, y0, x1, y1 = layout.box(i, j)
                draw.rectangle((x0 - 1, y0 - 1, x1, y1), outline=FRAME)
            x0, y0, _, y1 = layout.box(i, 0)
            put_text(image, (x0 - LABEL_BAND // 2, (y0 + y1) // 2), label, "label", vertical=True)
        draw_colour_bar(image, draw, layout)
    page = np.asarray(image).copy()
    page.flags.writeable = False
    return page


def draw_colour_bar(image: Image.Image, draw: ImageDraw.ImageDraw, layout: GridLayout) -> None:
    """Viridis from 0 (bottom) to 1 (top) beside the mask row, the cells' own fixed scale."""
    _, y0, x1, y1 = layout.box(MASK_ROW, layout.columns - 1)
    left = x1 + 2 * GAP
    right = left + BAR_WIDTH
    levels = np.rint(np.linspace(255, 0, y1 - y0)).astype(np.intp)
    image.paste(Image.fromarray(np.repeat(VIRIDIS[levels][:, None], BAR_WIDTH, axis=1)), (left, y0))
    draw.rectangle((left - 1, y0 - 1, right, y1), outline=FRAME)
    widest = 0
    for value, text in ((0.0, "0"), (0.5, "0.5"), (1.0, "1")):
        y = round(y1 - 1 - value * (y1 - y0 - 1))
        draw.line((right, y, right + 3, y), fill=FRAME)
        width = text_stamp(text, "bar", False).width
        put_text(image, (right + 6 + width // 2, y), text, "bar")
        widest = max(widest, width)
    put_text(image, (right + 6 + widest + 4 + FONT_PIXELS["bar"] // 2, (y0 + y1) // 2), "forget share", "bar",
             vertical=True)


def put_text(image: Image.Image, centre: tuple[int, int], text: str, role: str, *, vertical: bool = False) -> None:
    """Text in INK centred on a point by its ink box; `vertical` reads bottom to top (a y-axis label)."""
    stamp = text_stamp(text, role, vertical)
    image.paste(INK, (centre[0] - stamp.width // 2, centre[1] - stamp.height // 2), mask=stamp)


@functools.lru_cache(maxsize=4096)
def text_stamp(text: str, role: str, vertical: bool) -> Image.Image:
    """The text's anti-aliased ink as a mask cropped to its ink box: headers repeat ("λ 0.50"), so each
    string is rasterised once per process."""
    typeface = font(role)
    left, top, right, bottom = typeface.getbbox(text)
    stamp = Image.new("L", (max(right - left, 1), max(bottom - top, 1)), 0)
    ImageDraw.Draw(stamp).text((-left, -top), text, font=typeface, fill=255)
    return stamp.rotate(90, expand=True) if vertical else stamp


@functools.lru_cache(maxsize=None)
def font(role: str) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans from matplotlib's package data (found without importing matplotlib): it has the Greek
    and the combining macron of the headers; Pillow's own font where it is missing."""
    size = FONT_PIXELS[role]
    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


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
