"""Image data sets held as uint8 tensors: found offline first, decoded once, moved to the device once.

    data = load_dataset("cifar10", train_subset=500)   # 500 images per class, stratified, deterministic
    data = data.to("cuda")                              # batches are then plain indexing on the device
    x = data.normalize(augment(data.train_images[idx], generator))

Where a set is looked for, in this order (the first hit wins):
  1. data_root in torchvision's layout: <root>/FashionMNIST/raw, <root>/MNIST/raw, <root>/cifar-10-batches-py,
     <root>/svhn/*_32x32.mat.
  2. Offline sources: Fashion-MNIST from the Debian package dataset-fashion-mnist; MNIST and CIFAR-10 from the
     archives in the shared data folder, verified against its SHA256SUMS and decoded once into
     <default_cache_dir()>/datasets/<name>-<sha256 prefix>.npz.
  3. torchvision's download=True into data_root (last resort: the build machines reach no data hosts).
A set found nowhere raises DatasetNotFound naming every place looked and how to get the set.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import socket
import struct
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mixunlearn.fields import DATASETS, CommonFields, ConfigError

DATA_SEED = 0                # fixes the subsets and the test order: every trial and every ref_seed sees the same data
CROP_PAD = 4                 # augment: random crop of the image padded by 4 pixels (the usual CIFAR recipe)
DOWNLOAD_TIMEOUT_S = 60      # torchvision's urlopen has no timeout; a black-holed host must not hang a trial
PROGRESS_EVERY_S = 5         # decoding an archive once takes ~a minute: a line of progress this often
FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")   # apt-get install -y dataset-fashion-mnist
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGITS = tuple(str(d) for d in range(10))
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

HOW_TO_GET = {
    "fashion_mnist": "install the Debian package (apt-get install -y dataset-fashion-mnist), or put torchvision's "
                     "layout under data_root (--data-root): <root>/FashionMNIST/raw/train-images-idx3-ubyte.gz etc.",
    "mnist": "put mnist-pngs-*.tar.gz with its SHA256SUMS line in the shared data folder ($MIXSWEEP_SHARED_DATA), "
             "or put torchvision's layout under data_root (--data-root): "
             "<root>/MNIST/raw/train-images-idx3-ubyte.gz etc.",
    "cifar10": "put cifar10-images-*.tar.gz with its SHA256SUMS line in the shared data folder "
               "($MIXSWEEP_SHARED_DATA), or put torchvision's layout under data_root (--data-root): "
               "<root>/cifar-10-batches-py/data_batch_1..5 and test_batch",
    "svhn": "put train_32x32.mat and test_32x32.mat (http://ufldl.stanford.edu/housenumbers/) in <root>/svhn "
            "under data_root (--data-root), or run once with internet access so torchvision downloads them there",
}


class DatasetNotFound(FileNotFoundError):
    """A data set is in none of the places looked; the message lists them and says how to get the set."""


class NotHere(Exception):
    """One place a data set was looked for and not found; the message names the place and why."""


# ---- the held data -----------------------------------------------------------------------------------

@dataclass
class ImageData:
    name: str
    train_images: torch.Tensor   # uint8 [n, C, H, W]
    train_labels: torch.Tensor   # int64 [n]
    test_images: torch.Tensor    # uint8 [m, C, H, W], fixed seeded shuffled order: the first k span all classes
    test_labels: torch.Tensor    # int64 [m]
    num_classes: int
    mean: tuple[float, ...]      # per channel of the held training images, in [0, 1] pixel units
    std: tuple[float, ...]
    fingerprint: str             # sha256 hex of the name and exactly the arrays held
    source: str                  # where it was loaded from, for records
    _affine: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @property
    def in_channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_images.shape[2]

    def to(self, device: torch.device | str) -> ImageData:
        """A copy with every tensor on `device` (one transfer each; later batches are device-side indexing)."""
        return dataclasses.replace(
            self, train_images=self.train_images.to(device), train_labels=self.train_labels.to(device),
            test_images=self.test_images.to(device), test_labels=self.test_labels.to(device))

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """float32 (x/255 - mean)/std on the images' device, as one fused multiply-add per element."""
        device = images_uint8.device
        if device not in self._affine:   # built once per device: no host-to-device copy per batch
            std = torch.tensor(self.std, dtype=torch.float32)
            scale = (1.0 / (255.0 * std)).view(-1, 1, 1)
            shift = (-torch.tensor(self.mean, dtype=torch.float32) / std).view(-1, 1, 1)
            self._affine[device] = (scale.to(device), shift.to(device))
        scale, shift = self._affine[device]
        return torch.addcmul(shift, images_uint8.float(), scale)


def augment(images_uint8: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding 4) and horizontal flip of a batch [n, C, H, W], in one gather.

    Random numbers come from `generator` on its own device, so a CPU generator also serves CUDA images.
    """
    n, channels, height, width = images_uint8.shape
    device = images_uint8.device
    span = 2 * CROP_PAD + 1
    dy = torch.randint(span, (n,), generator=generator, device=generator.device).to(device)
    dx = torch.randint(span, (n,), generator=generator, device=generator.device).to(device)
    flip = (torch.rand(n, generator=generator, device=generator.device) < 0.5).to(device)
    padded = F.pad(images_uint8, (CROP_PAD,) * 4)
    rows = dy[:, None] + torch.arange(height, device=device)
    cols = torch.arange(width, device=device).expand(n, width)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + dx[:, None]   # flipping the window = crop, then flip
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(channels, device=device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


# ---- where to look -----------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """$MIXSWEEP_CACHE, else ~/.cache/mixsweep; decoded data sets live under <cache>/datasets."""
    return Path(os.environ.get("MIXSWEEP_CACHE") or Path.home() / ".cache" / "mixsweep")


def default_data_root() -> Path:
    """$MIXSWEEP_DATA, else <default_cache_dir()>/data: the torchvision-layout root when data_root is empty."""
    return Path(os.environ.get("MIXSWEEP_DATA") or default_cache_dir() / "data")


def shared_data_dirs() -> list[Path]:
    """The shared data folder: $MIXSWEEP_SHARED_DATA alone when set, else ../shared/data beside the repo or cwd."""
    if os.environ.get("MIXSWEEP_SHARED_DATA"):
        return [Path(os.environ["MIXSWEEP_SHARED_DATA"])]
    beside_repo = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    beside_cwd = Path.cwd().resolve().parent / "shared" / "data"
    return list(dict.fromkeys([beside_repo, beside_cwd]))


# ---- readers: each returns (train_images, train_labels, test_images, test_labels, source) or raises NotHere

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (the MNIST format), gzipped or not."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def from_idx_dir(directory: Path) -> Arrays:
    paths = []
    for stem in IDX_FILES:
        found = [p for p in (directory / stem, directory / f"{stem}.gz") if p.is_file()]
        if not found:
            raise NotHere(f"{directory} (no {stem}[.gz])")
        paths.append(found[0])
    train_images, train_labels, test_images, test_labels = (read_idx(p) for p in paths)
    return train_images[:, None], train_labels, test_images[:, None], test_labels, str(directory)


def from_cifar_batches(directory: Path) -> Arrays:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise NotHere(f"{directory} (no {', '.join(missing)})")
    batches = []
    for name in names:   # torchvision's own format is a pickle; it is only read from the user's data_root
        with open(directory / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        batches.append((np.asarray(entry["data"], np.uint8).reshape(-1, 3, 32, 32), np.asarray(entry["labels"])))
    train_images = np.concatenate([b[0] for b in batches[:5]])
    train_labels = np.concatenate([b[1] for b in batches[:5]])
    return train_images, train_labels, batches[5][0], batches[5][1], str(directory)


def from_svhn_mats(directory: Path) -> Arrays:
    paths = [directory / "train_32x32.mat", directory / "test_32x32.mat"]
    if not all(p.is_file() for p in paths):
        raise NotHere(f"{directory} (no train_32x32.mat and test_32x32.mat)")
    from scipy.io import loadmat   # only SVHN needs scipy

    arrays = []
    for path in paths:
        mat = loadmat(path)
        arrays += [mat["X"].transpose(3, 2, 0, 1), mat["y"].ravel() % 10]   # [H,W,C,n] -> [n,C,H,W]; "10" is digit 0
    return (*arrays, str(directory))


def from_archive(name: str, pattern: str, class_names: tuple[str, ...], mode: str) -> Arrays:
    """A shared-folder archive of train/<class>/*.jpg|png: verified, decoded once, then read from the cache."""
    dirs = shared_data_dirs()
    archives = [p for d in dirs if d.is_dir() for p in sorted(d.glob(pattern))]
    if not archives:
        raise NotHere(f"shared data folder {' or '.join(map(str, dirs))} (no {pattern})")
    archive = archives[0]
    sums = archive.parent / "SHA256SUMS"
    expected = listed_sha256(sums, archive.name)
    if expected is None:
        raise NotHere(f"{archive} (no line for it in {sums}, so it cannot be verified)")
    cache = default_cache_dir() / "datasets" / f"{name}-{expected[:12]}.npz"
    if cache.is_file():
        try:
            with np.load(cache) as held:
                return (held["train_images"], held["train_labels"], held["test_images"], held["test_labels"],
                        f"{archive} (decoded cache {cache})")
        except Exception:   # a damaged cache is only a cache: decode the archive again below
            pass
    digest = hashlib.sha256()
    with open(archive, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise NotHere(f"{archive} (sha256 {digest.hexdigest()} differs from {expected} in {sums})")
    arrays = decode_image_archive(archive, class_names, mode)
    write_npz_atomically(cache, train_images=arrays[0], train_labels=arrays[1], test_images=arrays[2],
                         test_labels=arrays[3])
    return (*arrays, f"{archive} (decoded into {cache})")


def listed_sha256(sums: Path, filename: str) -> str | None:
    """The digest `sha256sum` listed for filename in sums ("<hex>  <name>" or "<hex> *<name>"), if any."""
    for line in sums.read_text().splitlines() if sums.is_file() else []:
        digest, _, listed = line.strip().partition(" ")
        if listed.strip().lstrip("*") == filename:
            return digest
    return None


def write_npz_atomically(path: Path, **arrays: np.ndarray) -> None:
    """tmp file + os.replace: trials decoding at the same time never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz.tmp", delete=False) as tmp:
        try:
            np.savez(tmp, **arrays)
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.chmod(tmp.name, 0o644)   # NamedTemporaryFile makes it private; a shared cache must be readable by all
    os.replace(tmp.name, path)


def decode_image_archive(archive: Path, class_names: tuple[str, ...], mode: str) -> tuple[np.ndarray, ...]:
    """Decode ./{train,test}/<class>/<number>.<ext> with PIL, each split ordered by (number, class)."""
    label_of = {c: i for i, c in enumerate(class_names)}
    found: dict[str, list[tuple[tuple[int, int], np.ndarray]]] = {"train": [], "test": []}
    print(f"decoding {archive.name} once into the data cache (the next runs read the cache)", flush=True)
    shown = time.monotonic()
    # Decompressing whole (~90 MB) and reading the tar from memory costs ~40% less CPU than seeking in a gzip stream.
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive.read_bytes()))) as tar:
        for member in tar:
            if time.monotonic() - shown >= PROGRESS_EVERY_S:
                print(f"decoding {archive.name}: {len(found['train']) + len(found['test'])} images so far", flush=True)
                shown = time.monotonic()
            parts = member.name.removeprefix("./").split("/")   # plain str ops: pathlib costs ~1 s over 60k names
            if not member.isfile() or len(parts) != 3 or parts[0] not in found or parts[1] not in label_of:
                continue
            stem = parts[2].rsplit(".", 1)[0]
            with Image.open(io.BytesIO(tar.extractfile(member).read())) as image:
                pixels = np.asarray(image if image.mode == mode else image.convert(mode))
            found[parts[0]].append(((int(stem) if stem.isdigit() else 0, label_of[parts[1]]), pixels))
    if not found["train"] or not found["test"]:
        raise NotHere(f"{archive} (no train/<class>/ and test/<class>/ images inside)")
    arrays = []
    for split in ("train", "test"):
        entries = sorted(found[split], key=lambda e: e[0])
        images = np.stack([pixels for _, pixels in entries])
        images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        arrays += [np.ascontiguousarray(images), np.array([key[1] for key, _ in entries], np.int64)]
    return tuple(arrays)


def from_torchvision_download(name: str, root: Path) -> Arrays:
    """torchvision's download=True into root, then the torchvision-layout reader; every failure is a NotHere."""
    try:
        import torchvision.datasets as tvd

        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            if name == "svhn":
                for split in ("train", "test"):
                    tvd.SVHN(str(root / "svhn"), split=split, download=True)
            else:
                kind = {"fashion_mnist": tvd.FashionMNIST, "mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}[name]
                for train in (True, False):
                    kind(str(root), train=train, download=True)
        finally:
            socket.setdefaulttimeout(previous)
        return torchvision_layout(name, root)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise NotHere(f"torchvision download into {root} (failed: {type(exc).__name__}: {reason})") from None


def torchvision_layout(name: str, root: Path) -> Arrays:
    if name == "fashion_mnist":
        return from_idx_dir(root / "FashionMNIST" / "raw")
    if name == "mnist":
        return from_idx_dir(root / "MNIST" / "raw")
    if name == "cifar10":
        return from_cifar_batches(root / "cifar-10-batches-py")
    try:
        return from_svhn_mats(root / "svhn")
    except NotHere as missing:
        try:
            return from_svhn_mats(root)   # torchvision's SVHN takes its root as given, so <root>/*.mat is common too
        except NotHere:
            raise missing from None


def sources(name: str, root: Path) -> list[tuple[str, Callable[[], Arrays]]]:
    """(place, reader) for `name`, in the order they are tried."""
    offline: dict[str, tuple[str, Callable[[], Arrays]]] = {
        "fashion_mnist": (str(FASHION_MNIST_DEBIAN), lambda: from_idx_dir(FASHION_MNIST_DEBIAN)),
        "mnist": ("the shared data folder",
                  lambda: from_archive("mnist", "mnist-pngs-*.tar.gz", DIGITS, "L")),
        "cifar10": ("the shared data folder",
                    lambda: from_archive("cifar10", "cifar10-images-*.tar.gz", CIFAR10_CLASSES, "RGB")),
    }
    return [(str(root), lambda: torchvision_layout(name, root)), *([offline[name]] if name in offline else []),
            (f"torchvision download into {root}", lambda: from_torchvision_download(name, root))]


def tiny() -> Arrays:
    """10 classes of 1x28x28: a fixed blocky pattern per class plus strong noise; cnn_small learns it in seconds."""
    rng = np.random.default_rng(DATA_SEED)
    patterns = np.kron(rng.random((10, 7, 7)) < 0.4, np.ones((4, 4))).astype(np.float64)   # [10, 28, 28]

    def draw(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.repeat(np.arange(10), per_class))   # not class-sorted, like real sets
        pixels = 60 + 120 * patterns[labels] + rng.normal(0, 45, (len(labels), 28, 28))
        return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)[:, None], labels

    return (*draw(60), *draw(20), "built-in synthetic set 'tiny'")


# ---- loading -----------------------------------------------------------------------------------------

def load_dataset(name: str, *, data_root: str | Path | None = None, train_subset: int = 0,
                 test_subset: int = 0) -> ImageData:
    """Load a data set (see the module docstring for where it is looked for).

    Args:
        name: one of mixunlearn.config.DATASETS.
        data_root: torchvision-layout root; None or "" = default_data_root().
        train_subset, test_subset: images kept per class (0 = all): the first k of each class along a
            permutation fixed by DATA_SEED, so a smaller subset is contained in a larger one.
    Raises:
        DatasetNotFound: the set is nowhere; the message lists every place looked and how to get it.
    """
    if name not in DATASETS:
        raise ConfigError(f"dataset = {name!r} is not allowed; use one of {', '.join(DATASETS)}")
    for option, value in (("train_subset", train_subset), ("test_subset", test_subset)):
        if value < 0:
            raise ConfigError(f"{option} = {value!r} is not allowed; "
                              "use 0 for the whole set or a positive count per class")
    root = Path(data_root) if data_root else default_data_root()
    train_images, train_labels, test_images, test_labels, source = tiny() if name == "tiny" else find(name, root)

    rng = np.random.default_rng(DATA_SEED)   # the train permutation is drawn even unused: the test order stays put
    train_keep = np.sort(first_per_class(train_labels, rng.permutation(len(train_labels)), train_subset))
    test_keep = first_per_class(test_labels, rng.permutation(len(test_labels)), test_subset)   # stays shuffled
    if train_subset == 0:
        train_keep = slice(None)   # a view, not a copy of the whole set
    arrays = [np.require(train_images[train_keep], requirements=["C", "W"]), train_labels[train_keep].astype(np.int64),
              np.ascontiguousarray(test_images[test_keep]), test_labels[test_keep].astype(np.int64)]
    mean, std = channel_stats(arrays[0])
    train_images_t, train_labels_t, test_images_t, test_labels_t = (torch.from_numpy(a) for a in arrays)
    return ImageData(name=name, train_images=train_images_t, train_labels=train_labels_t,
                     test_images=test_images_t, test_labels=test_labels_t,
                     num_classes=int(max(arrays[1].max(), arrays[3].max())) + 1, mean=mean, std=std,
                     fingerprint=fingerprint(name, arrays), source=source)


def load_data(cfg: CommonFields) -> ImageData:
    """The data set a run's config names."""
    return load_dataset(cfg.dataset, data_root=cfg.data_root or None, train_subset=cfg.train_subset,
                        test_subset=cfg.test_subset)


def find(name: str, root: Path) -> Arrays:
    looked = []
    for place, read in sources(name, root):
        try:
            return read()
        except NotHere as missing:
            looked.append(str(missing))
        except Exception as exc:   # a damaged file is reported with its place, never as a deep traceback
            looked.append(f"{place} (unreadable: {type(exc).__name__}: {exc})")
    raise DatasetNotFound(f"Data set {name!r} was not found. Looked in: {'; '.join(looked)}. "
                          f"To get it: {HOW_TO_GET[name]}.")


def first_per_class(labels: np.ndarray, order: np.ndarray, k: int) -> np.ndarray:
    """The entries of `order` (in its order) that are among the first k of their class along it; k = 0: all."""
    if k == 0:
        return order
    ordered = labels[order]
    by_class = np.argsort(ordered, kind="stable")
    counts = np.bincount(ordered)
    rank = np.empty(len(order), np.int64)
    rank[by_class] = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
    return order[rank < k]


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units, from exact integer sums over chunks (no float copy of the set)."""
    total = np.zeros(images.shape[1], np.int64)
    squares = np.zeros(images.shape[1], np.int64)
    for start in range(0, len(images), 1024):
        chunk = images[start:start + 1024].astype(np.int64)
        total += chunk.sum(axis=(0, 2, 3))
        squares += (chunk * chunk).sum(axis=(0, 2, 3))
    count = images.size // images.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0))
    return tuple((mean / 255).tolist()), tuple(np.maximum(std / 255, 1e-6).tolist())


def fingerprint(name: str, arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256(name.encode())
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()
