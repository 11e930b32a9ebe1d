"""The mix grids as a user sees them: PNGs of one size whose cells show the very pixels of the mixed
images, the mask on viridis' fixed 0..1 scale with its bar, λ and M̄ over each column; logged on a run."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from mixunlearn.config import UnlearnConfig
from mixunlearn.run import prepare
from mixunlearn.methods import MixUnlearn
from trainables.mix_pictures import (ARTIFACT_FOLDER, GRID_PIXELS, KINDS, denormalise, draw_grid, font,
                                     grid_layout, grid_name, log_mix_grids)

CFG = UnlearnConfig(dataset="tiny", model="cnn_small", ref_epochs=2, epochs=1, batch_size=16, mia_samples=200)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
VIRIDIS_0, VIRIDIS_1 = (68, 1, 84), (253, 231, 37)   # matplotlib's viridis at 0 and at 1
ROW = {"forget": 0, "retain": 1, "mask": 2, "mix": 3}
TITLE_BAND = 26   # rows of the page above the headers, where the title line is


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real MixUnlearn loop on the tiny real data set after one epoch, and its data."""
    prepared = prepare(CFG, device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))
    loop = MixUnlearn(CFG, prepared.data, prepared.split, original=prepared.references.original, device="cpu")
    loop.train_epoch()
    return loop, prepared.data


def constructed(columns: int, channels: int = 3, side: int = 32) -> dict[str, torch.Tensor]:
    """CIFAR-style pairs whose masks are known: all 0, all 1, top 0 / bottom 1, then 0.5 everywhere."""
    generator = torch.Generator().manual_seed(0)
    forget, retain = (torch.rand(columns, channels, side, side, generator=generator) for _ in range(2))
    known = [torch.zeros(side, side), torch.ones(side, side),
             torch.cat([torch.zeros(side // 2, side), torch.ones(side - side // 2, side)])]
    share = torch.stack([known[j] if j < len(known) else torch.full((side, side), 0.5) for j in range(columns)])
    mean = torch.tensor(CIFAR_MEAN[:channels]).view(1, -1, 1, 1)
    std = torch.tensor(CIFAR_STD[:channels]).view(1, -1, 1, 1)
    mix = share[:, None] * forget + (1 - share[:, None]) * retain
    return {"forget": (forget - mean) / std, "retain": (retain - mean) / std, "mix": (mix - mean) / std,
            "forget_share": share, "lam": torch.linspace(0.1, 0.9, columns)}


def drawn(tmp_path, samples, *, mean=CIFAR_MEAN, std=CIFAR_STD, title="a grid", name="grid.png") -> np.ndarray:
    path = draw_grid(tmp_path / name, samples, mean=mean, std=std, title=title)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == GRID_PIXELS
        return np.asarray(image.convert("RGB")).astype(int)


def cell_pixels(page: np.ndarray, row: int, column: int, columns: int, side: int) -> np.ndarray:
    """[side, side, 3]: the page at the centre of each source pixel's block in one cell."""
    x0, y0, _, _ = grid_layout(columns).box(row, column)
    centres = ((np.arange(side) + 0.5) * grid_layout(columns).cell / side).astype(int)
    return page[y0 + centres][:, x0 + centres]


def assert_cells_show_the_images(page, samples, mean, std):
    columns, side = len(samples["lam"]), samples["forget"].shape[-1]
    for name in ("forget", "retain", "mix"):
        images = (denormalise(samples[name], mean, std).numpy() * 255).round()   # [k, H, W, C], grey as C = 1
        for j in range(columns):
            shown = cell_pixels(page, ROW[name], j, columns, side)
            assert np.abs(shown - images[j]).max() <= 2, (name, j)   # grey: R = G = B = the level


def test_a_real_loops_grids_show_its_images_at_their_pixels(trained, tmp_path):
    loop, data = trained
    samples = loop.mix_samples()
    assert set(samples) == set(KINDS)
    for kind, parts in samples.items():
        assert parts["forget"].shape[1] == 1   # the tiny set is Fashion-MNIST-like: one channel, 28 x 28
        page = drawn(tmp_path, parts, mean=data.mean, std=data.std, name=f"{kind}.png")
        assert_cells_show_the_images(page, parts, data.mean, data.std)


def test_a_three_channel_grid_shows_its_images_in_colour(tmp_path):
    samples = constructed(5)
    page = drawn(tmp_path, samples)
    assert_cells_show_the_images(page, samples, CIFAR_MEAN, CIFAR_STD)
    forget = cell_pixels(page, ROW["forget"], 0, 5, 32)
    assert np.abs(forget[..., 0] - forget[..., 1]).max() > 50   # colour, not grey


def test_the_mask_is_viridis_on_a_fixed_scale_with_its_bar(tmp_path):
    page = drawn(tmp_path, constructed(4))
    mask = [cell_pixels(page, ROW["mask"], j, 4, 32) for j in range(4)]
    assert np.abs(mask[0] - VIRIDIS_0).max() <= 2          # all 0: dark purple, not stretched to the data
    assert np.abs(mask[1] - VIRIDIS_1).max() <= 2          # all 1: yellow
    assert np.abs(mask[2][:16] - VIRIDIS_0).max() <= 2 and np.abs(mask[2][16:] - VIRIDIS_1).max() <= 2
    assert np.abs(mask[3] - mask[3][0, 0]).max() == 0 and 100 < mask[3][0, 0, 1] < 180   # 0.5: the middle teal
    # The bar beside the mask row: some column right of the last cell runs from yellow at its top to purple
    # at its bottom; none does beside the other rows.
    _, top, right, bottom = grid_layout(4).box(ROW["mask"], 3)
    beside = page[top + 2, right:], page[bottom - 3, right:]
    near = 20   # a few pixels in from the bar's ends, the colours of 0.98 and 0.02
    assert np.any((np.abs(beside[0] - VIRIDIS_1).max(axis=1) <= near)
                  & (np.abs(beside[1] - VIRIDIS_0).max(axis=1) <= near))
    _, top, right, bottom = grid_layout(4).box(ROW["forget"], 3)
    assert not np.any(np.abs(page[top + 2, right:] - VIRIDIS_1).max(axis=1) <= near)


def test_the_title_and_each_columns_lambda_are_drawn(tmp_path):
    samples = constructed(3)
    page = drawn(tmp_path, samples)
    assert (page[:TITLE_BAND] < 128).any()   # the title's ink
    assert (drawn(tmp_path, samples, title="")[:TITLE_BAND] == 255).all()
    # Another lambda for the first pair changes its header, and nothing else on the page.
    other = drawn(tmp_path, {**samples, "lam": torch.tensor([0.97, *samples["lam"][1:].tolist()])})
    changed = np.argwhere((page != other).any(axis=-1))
    left, top, right, _ = grid_layout(3).box(0, 0)
    assert len(changed) > 0
    assert changed[:, 0].max() < top and changed[:, 0].min() >= TITLE_BAND
    assert left - 8 <= changed[:, 1].min() and changed[:, 1].max() < right + 8
    assert font("header").getname()[0] == "DejaVu Sans"   # has λ and the combining macron of M̄


@pytest.mark.parametrize("columns", [1, 2, 8])
def test_every_number_of_pairs_gives_the_same_size_with_every_cell_on_the_page(columns, tmp_path):
    samples = constructed(columns, channels=1, side=28)
    page = drawn(tmp_path, samples, mean=(0.5,), std=(0.5,))
    assert_cells_show_the_images(page, samples, (0.5,), (0.5,))
    layout = grid_layout(columns)
    left, top, _, _ = layout.box(0, 0)
    _, _, right, bottom = layout.box(3, columns - 1)
    assert 0 < left and TITLE_BAND < top and right < GRID_PIXELS[0] and bottom < GRID_PIXELS[1]


def test_no_pairs_gives_the_title_alone_on_a_page_of_the_same_size(tmp_path):
    page = drawn(tmp_path, {name: part[:0] for name, part in constructed(3).items()}, title="no mixes kept")
    assert (page[:TITLE_BAND] < 128).any()
    assert (page[TITLE_BAND:] == 255).all()


def test_log_mix_grids_logs_one_png_per_kind_on_the_run(trained, tmp_path):
    loop, data = trained
    client = MlflowClient("sqlite:///" + str(tmp_path / "mlflow.db"))
    experiment = client.create_experiment("grids", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    expected = [f"{ARTIFACT_FOLDER}/{grid_name(1, kind)}" for kind in ("generator", "unlearner")]
    assert log_mix_grids(client, run_id, loop, data, epoch=1) == expected
    assert sorted(a.path for a in client.list_artifacts(run_id, ARTIFACT_FOLDER)) == expected
    for path in expected:
        with Image.open(client.download_artifacts(run_id, path, str(tmp_path / "down"))) as image:
            assert image.format == "PNG" and image.size == GRID_PIXELS
    assert log_mix_grids(client, run_id, object(), data, epoch=2) == []   # a method without mixes logs none
