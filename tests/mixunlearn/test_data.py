"""Data sets: found offline, decoded once into the cache, subset deterministically, augmented without Python loops.

The real-data tests read Fashion-MNIST from the Debian package and CIFAR-10 / MNIST from ../shared/data; they skip,
with the reason, where those are absent. The decoded archives stay in the default cache so later runs reuse them.
"""
import gzip
import hashlib
import io
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mixunlearn import data as data_module
from mixunlearn.config import ConfigError, UnlearnConfig
from mixunlearn.data import (DatasetNotFound, augment, default_cache_dir, load_data, load_dataset,
                             shared_data_dirs)


@pytest.fixture
def offline(monkeypatch):
    """No network, as on the build machines: name lookups fail at once, so torchvision's download fails fast."""
    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "no network in this test")
    monkeypatch.setattr(socket, "getaddrinfo", no_network)


@pytest.fixture
def nowhere(tmp_path, monkeypatch, offline):
    """An empty data root, shared folder and cache: no data set can be found."""
    for name in ("root", "shared", "cache"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("MIXSWEEP_SHARED_DATA", str(tmp_path / "shared"))
    monkeypatch.setenv("MIXSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data_module, "FASHION_MNIST_DEBIAN", tmp_path / "no-debian-package")
    return tmp_path


# ---- the built-in tiny set: shapes, determinism, subsets, test order ---------------------------------

def test_tiny_has_the_documented_shape_and_balance():
    data = load_dataset("tiny")
    assert data.train_images.shape == (600, 1, 28, 28) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (200, 1, 28, 28) and data.test_labels.dtype == torch.int64
    assert data.train_labels.bincount().tolist() == [60] * 10
    assert data.test_labels.bincount().tolist() == [20] * 10
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 1, 28)


def test_loading_twice_gives_the_same_arrays_and_fingerprint():
    first, second = load_dataset("tiny"), load_dataset("tiny")
    assert first.fingerprint == second.fingerprint
    assert torch.equal(first.train_images, second.train_images) and torch.equal(first.test_labels, second.test_labels)
    assert load_data(UnlearnConfig(dataset="tiny")).fingerprint == first.fingerprint


def test_subsets_are_stratified_nested_and_change_the_fingerprint():
    small = load_dataset("tiny", train_subset=3, test_subset=2)
    larger = load_dataset("tiny", train_subset=5, test_subset=4)
    assert small.train_labels.bincount().tolist() == [3] * 10
    assert small.test_labels.bincount().tolist() == [2] * 10
    assert larger.train_labels.bincount().tolist() == [5] * 10
    as_rows = lambda images: {bytes(image.numpy().tobytes()) for image in images}   # noqa: E731
    assert as_rows(small.train_images) <= as_rows(larger.train_images)   # the first k of one fixed permutation
    assert len({small.fingerprint, larger.fingerprint, load_dataset("tiny").fingerprint}) == 3


def test_test_set_is_shuffled_so_its_head_spans_the_classes():
    data = load_dataset("tiny")
    assert len(set(data.test_labels[:20].tolist())) >= 6
    assert not torch.equal(data.test_labels, data.test_labels.sort().values)


def test_unknown_name_and_negative_subset_are_refused_by_name():
    with pytest.raises(ConfigError, match="dataset = 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(ConfigError, match="train_subset = -1"):
        load_dataset("tiny", train_subset=-1)


# ---- on-device use: to, normalize, augment ----------------------------------------------------------

def test_normalize_gives_zero_mean_unit_std_on_the_training_set():
    data = load_dataset("tiny").to("cpu")
    x = data.normalize(data.train_images)
    assert x.dtype == torch.float32 and x.shape == data.train_images.shape
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-3


def test_augment_is_a_padded_crop_with_optional_flip_and_follows_the_generator():
    images = load_dataset("tiny").train_images[:32]
    out = augment(images, torch.Generator().manual_seed(3))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out, augment(images, torch.Generator().manual_seed(3)))
    assert not torch.equal(out, augment(images, torch.Generator().manual_seed(4)))
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    flips = 0
    for image, result in zip(padded, out):   # brute force over every window: the test may loop, augment may not
        windows = {(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
                   if torch.equal(result, (lambda w: w.flip(-1) if flip else w)(image[:, dy:dy + 28, dx:dx + 28]))}
        assert windows, "every augmented image is a window of the padded image, maybe flipped"
        flips += all(flip for _, _, flip in windows)
    assert 0 < flips < 32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augment_and_normalize_stay_on_the_gpu():
    data = load_dataset("tiny").to("cuda")
    out = augment(data.train_images, torch.Generator().manual_seed(0))
    assert out.device.type == "cuda" and data.normalize(out).device.type == "cuda"


# ---- missing data: one clear message ----------------------------------------------------------------

@pytest.mark.parametrize("name, places", [
    ("cifar10", ["cifar-10-batches-py", "cifar10-images-*.tar.gz"]),
    ("svhn", ["svhn", "train_32x32.mat"]),
])
def test_a_missing_set_raises_one_message_naming_every_place(nowhere, name, places):
    root = nowhere / "root"
    with pytest.raises(DatasetNotFound) as error:
        load_dataset(name, data_root=root)
    message = str(error.value)
    assert f"Data set {name!r} was not found" in message
    assert str(root) in message and "torchvision download" in message and "--data-root" in message
    for place in places:
        assert place in message
    if name == "cifar10":
        assert str(nowhere / "shared") in message
    assert error.value.__context__ is None and error.value.__cause__ is None   # no torchvision traceback attached


def test_missing_fashion_mnist_says_how_to_install_it(nowhere):
    with pytest.raises(DatasetNotFound) as error:
        load_dataset("fashion_mnist", data_root=nowhere / "root")
    assert "apt-get install -y dataset-fashion-mnist" in str(error.value)
    assert str(nowhere / "no-debian-package") in str(error.value)


# ---- archives: verified, decoded once, then read from the cache ------------------------------------

def write_png_archive(path: Path, per_class: int) -> dict[str, np.ndarray]:
    """A small archive in the mnist-pngs layout: ./{train,test}/<digit>/<index>.png, indices in MNIST order."""
    rng = np.random.default_rng(0)
    images = {split: rng.integers(0, 256, (10 * per_class, 28, 28), dtype=np.uint8) for split in ("train", "test")}
    with tarfile.open(path, "w:gz") as tar:
        for split, offset in (("train", 0), ("test", 60000)):
            for index, pixels in enumerate(images[split]):
                buffer = io.BytesIO()
                Image.fromarray(pixels, "L").save(buffer, "PNG")
                member = tarfile.TarInfo(f"./{split}/{index % 10}/{offset + index}.png")
                member.size = buffer.tell()
                tar.addfile(member, io.BytesIO(buffer.getvalue()))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (path.parent / "SHA256SUMS").write_text(f"{digest}  {path.name}\n")
    return images


def test_archive_is_decoded_exactly_cached_and_then_not_reopened(nowhere, monkeypatch):
    images = write_png_archive(nowhere / "shared" / "mnist-pngs-test.tar.gz", per_class=3)
    data = load_dataset("mnist", data_root=nowhere / "root")
    assert torch.equal(data.train_images[:, 0], torch.from_numpy(images["train"]))   # PNG is lossless
    assert data.train_labels.tolist() == [i % 10 for i in range(30)]
    assert sorted(map(bytes, data.test_images.numpy())) == sorted(map(bytes, images["test"][:, None]))
    assert len(list((nowhere / "cache" / "datasets").glob("mnist-*.npz"))) == 1

    def untouchable(*args, **kwargs):
        raise AssertionError("the archive was opened although its decoded cache exists")
    monkeypatch.setattr(tarfile, "open", untouchable)
    again = load_dataset("mnist", data_root=nowhere / "root")
    assert again.fingerprint == data.fingerprint and "decoded cache" in again.source


def test_archive_failing_its_checksum_is_not_decoded(nowhere):
    archive = nowhere / "shared" / "mnist-pngs-test.tar.gz"
    write_png_archive(archive, per_class=1)
    archive.write_bytes(gzip.compress(b"tampered"))
    with pytest.raises(DatasetNotFound) as error:
        load_dataset("mnist", data_root=nowhere / "root")
    assert str(archive) in str(error.value) and "differs from" in str(error.value)
    assert not list((nowhere / "cache").rglob("*.npz"))


# ---- real data --------------------------------------------------------------------------------------

def shared_archive(pattern: str) -> Path | None:
    return next((p for d in shared_data_dirs() if d.is_dir() for p in sorted(d.glob(pattern))), None)


@pytest.mark.skipif(not data_module.FASHION_MNIST_DEBIAN.is_dir(),
                    reason="needs the Debian package dataset-fashion-mnist (apt-get install -y dataset-fashion-mnist)")
def test_real_fashion_mnist_from_the_debian_package(tmp_path):
    data = load_dataset("fashion_mnist", data_root=tmp_path)
    assert data.train_images.shape == (60000, 1, 28, 28) and data.test_images.shape == (10000, 1, 28, 28)
    assert data.train_labels.bincount().tolist() == [6000] * 10
    assert data.test_labels.bincount().tolist() == [1000] * 10
    assert data.source == str(data_module.FASHION_MNIST_DEBIAN)
    assert abs(data.mean[0] - 0.2860) < 1e-3 and abs(data.std[0] - 0.3530) < 1e-3   # the published statistics


@pytest.mark.parametrize("name, pattern, shape, train_counts, test_counts", [
    ("cifar10", "cifar10-images-*.tar.gz", (3, 32, 32), [5000] * 10, [1000] * 10),
    ("mnist", "mnist-pngs-*.tar.gz", (1, 28, 28),
     [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
     [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
])
def test_real_archive_decodes_once_into_the_default_cache(tmp_path, monkeypatch, name, pattern, shape,
                                                          train_counts, test_counts):
    if shared_archive(pattern) is None:
        pytest.skip(f"no {pattern} in the shared data folder ({', '.join(map(str, shared_data_dirs()))})")
    data = load_dataset(name, data_root=tmp_path)
    assert data.train_images.shape == (sum(train_counts), *shape) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (sum(test_counts), *shape)
    assert data.train_labels.bincount().tolist() == train_counts
    assert data.test_labels.bincount().tolist() == test_counts
    assert len(data.test_labels[:5000].unique()) == 10   # the ASR protocol's "first 5000 test samples"
    assert list((default_cache_dir() / "datasets").glob(f"{name}-*.npz"))

    monkeypatch.setattr(tarfile, "open", lambda *a, **k: pytest.fail("the archive was decoded a second time"))
    again = load_dataset(name, data_root=tmp_path)
    assert again.fingerprint == data.fingerprint and "decoded cache" in again.source



# ---- torchvision's layout under data_root is read first, by our own readers -----------------------------

def write_idx(path: Path, array: np.ndarray) -> None:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def write_torchvision_layout(name: str, root: Path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A small data set in torchvision's layout for `name`; returns the training images [n,C,H,W] and labels."""
    if name == "mnist":
        raw = root / "MNIST" / "raw"
        raw.mkdir(parents=True)
        images, labels = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), np.arange(20) % 10
        for prefix in ("train", "t10k"):
            write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images)
            write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
        return images[:, None], labels
    if name == "cifar10":
        import pickle
        batches = root / "cifar-10-batches-py"
        batches.mkdir(parents=True)
        images, labels = rng.integers(0, 256, (60, 3, 32, 32), dtype=np.uint8), np.arange(60) % 10
        for i, part in enumerate(np.split(np.arange(60), 6)):
            entry = {"data": images[part].reshape(len(part), -1), "labels": labels[part].tolist()}
            (batches / (f"data_batch_{i + 1}" if i < 5 else "test_batch")).write_bytes(pickle.dumps(entry))
        return images[:50], labels[:50]
    from scipy.io import savemat
    (root / "svhn").mkdir(parents=True)
    images, labels = rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8), np.arange(20) % 10
    for split in ("train", "test"):   # SVHN stores [H, W, C, n] and writes digit 0 as label 10
        savemat(root / "svhn" / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0),
                                                      "y": np.where(labels == 0, 10, labels)[:, None]})
    return images, labels


@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn"])
def test_torchvision_layout_under_data_root_is_read_exactly(nowhere, name):
    images, labels = write_torchvision_layout(name, nowhere / "root", np.random.default_rng(1))
    data = load_dataset(name, data_root=nowhere / "root")
    assert torch.equal(data.train_images, torch.from_numpy(images))   # training order is kept
    assert torch.equal(data.train_labels, torch.from_numpy(labels).long())
    assert str(nowhere / "root") in data.source


def test_a_damaged_file_is_reported_with_its_place_not_a_traceback(nowhere):
    batches = nowhere / "root" / "cifar-10-batches-py"
    batches.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (batches / name).write_bytes(b"not a pickle")
    with pytest.raises(DatasetNotFound) as error:
        load_dataset("cifar10", data_root=nowhere / "root")
    assert f"{nowhere / 'root'} (unreadable: UnpicklingError" in str(error.value)
