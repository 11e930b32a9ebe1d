"""What travels to a GPU machine with the checkout, beside the tracked files: wheels and the CIFAR-10 archive.

On the CPU machine, once, from the repository root (PyPI must be reachable):

    python benchmarks/gpu_carry.py prepare          # .gpu-wheels/ and .gpu-data/, then the 64 MiB budget
    python benchmarks/gpu_carry.py budget           # the budget alone (tree + carried folders, in MiB)

The GPU machines start bare and reach no network; their image has torch, numpy and pyarrow, but
`mixunlearn`'s attackers also need scikit-learn (and its dependencies). The image is expected to hold
them too, so the wheels are a fallback: `install_missing` installs one only where the interpreter lacks
that distribution, and says which came from where. scikit-learn is compiled, so it is carried for
CPython 3.11, 3.12 (the image's, as seen) and 3.13; its pure-Python dependencies once. SciPy (~35 MB a
wheel) is carried only with --with-scipy: the image's JAX brings it. Pins are the versions the test
suite runs with here.

Both folders are ignored by git (.gitignore): the device call names them in its carry list. What
`prepare` put there is recorded in benchmarks/gpu_carry.txt (sha256, bytes, path), so the budget can be
checked where the folders were never made (CI) and a later `prepare` shows any change as a diff.
Standard library only: the GPU check's setup imports this before it knows what the image holds.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # `python benchmarks/gpu_carry.py`: this checkout's mixunlearn, not an installed one
    sys.path.insert(1, str(ROOT))
WHEELS_DIR = ".gpu-wheels"
DATA_DIR = ".gpu-data"
MANIFEST = Path(__file__).resolve().parent / "gpu_carry.txt"
LIMIT_BYTES = 64 * 2**20          # the device tool's limit on what travels: tree + carried paths
COMPILED = {"scikit-learn": "1.9.1"}                     # one wheel per Python version
PURE = {"joblib": "1.6.0", "threadpoolctl": "3.8.0", "narwhals": "2.29.0", "cloudpickle": "3.1.3"}
SCIPY = {"scipy": "1.17.1"}                              # --with-scipy only
PYTHONS = ("3.11", "3.12", "3.13")
MANYLINUX = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
CIFAR10_ARCHIVE = "cifar10-images-*.tar.gz"


# ---- on the CPU machine: prepare and measure ---------------------------------------------------------

def prepare(root: Path = ROOT, *, with_scipy: bool = False, pythons: tuple[str, ...] = PYTHONS) -> None:
    wheels, data = root / WHEELS_DIR, root / DATA_DIR
    wheels.mkdir(exist_ok=True)
    compiled = {**COMPILED, **(SCIPY if with_scipy else {})}
    for version in pythons:
        pip_download(wheels, [f"{name}=={pin}" for name, pin in compiled.items()], "--python-version", version,
                     "--implementation", "cp", *(arg for tag in MANYLINUX for arg in ("--platform", tag)))
    pip_download(wheels, [f"{name}=={pin}" for name, pin in PURE.items()])
    copy_archive(data)
    write_manifest(root)
    report = budget(root)
    print(budget_text(report))
    if not report["fits"]:
        sys.exit(f"what travels is {report['total_mib']:.1f} MiB, over the {LIMIT_BYTES / 2**20:.0f} MiB limit: "
                 f"carry fewer Python versions (--pythons 3.12) or drop --with-scipy")


def pip_download(folder: Path, requirements: list[str], *options: str) -> None:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--dest", str(folder), *options, *requirements]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def copy_archive(folder: Path) -> None:
    """The shared folder's CIFAR-10 archive and its SHA256SUMS line (mixunlearn.data verifies it there)."""
    from mixunlearn.data import shared_data_dirs   # torch; the CPU machine has it

    found = [p for d in shared_data_dirs() if d.is_dir() for p in sorted(d.glob(CIFAR10_ARCHIVE))]
    if not found:
        sys.exit(f"no {CIFAR10_ARCHIVE} in the shared data folder ({', '.join(map(str, shared_data_dirs()))}); "
                 "set MIXSWEEP_SHARED_DATA to the folder that holds it")
    archive = found[0]
    lines = [line for line in (archive.parent / "SHA256SUMS").read_text().splitlines() if archive.name in line]
    folder.mkdir(exist_ok=True)
    if not (folder / archive.name).is_file() or (folder / archive.name).stat().st_size != archive.stat().st_size:
        shutil.copyfile(archive, folder / archive.name)
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def carried_files(root: Path) -> list[Path]:
    return sorted(p for folder in (WHEELS_DIR, DATA_DIR) if (root / folder).is_dir()
                  for p in (root / folder).iterdir() if p.is_file())


def write_manifest(root: Path) -> None:
    lines = ["# sha256  bytes  path: what `python benchmarks/gpu_carry.py prepare` put in the carried folders"]
    for path in carried_files(root):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.stat().st_size}  {path.relative_to(root)}")
    MANIFEST.write_text("\n".join(lines) + "\n")


def read_manifest() -> dict[str, int]:
    """path -> bytes, as the last `prepare` recorded them."""
    entries = {}
    for line in MANIFEST.read_text().splitlines() if MANIFEST.is_file() else []:
        if line.strip() and not line.startswith("#"):
            _digest, size, path = line.split(None, 2)
            entries[path] = int(size)
    return entries


def tree_bytes(root: Path) -> int:
    """Tracked files and untracked files git does not ignore: the part of the checkout that always travels."""
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    return sum((root / name).lstat().st_size for name in set(listed) if name and (root / name).exists())


def budget(root: Path = ROOT) -> dict:
    """The bytes that travel: the tree, and each carried folder as it is here, or as the manifest
    recorded it where it was never made on this machine."""
    recorded = read_manifest()
    folders = {}
    for folder in (WHEELS_DIR, DATA_DIR):
        here = [p for p in carried_files(root) if p.parent.name == folder]
        if here:
            folders[folder] = {"bytes": sum(p.stat().st_size for p in here), "files": len(here), "measured": "here"}
        else:
            listed = {path: size for path, size in recorded.items() if path.startswith(folder + "/")}
            folders[folder] = {"bytes": sum(listed.values()), "files": len(listed), "measured": "manifest"}
    tree = tree_bytes(root)
    total = tree + sum(f["bytes"] for f in folders.values())
    return {"tree_bytes": tree, "folders": folders, "total_bytes": total, "total_mib": total / 2**20,
            "limit_mib": LIMIT_BYTES / 2**20, "fits": total <= LIMIT_BYTES}


def budget_text(report: dict) -> str:
    parts = [f"tree {report['tree_bytes'] / 2**20:.1f} MiB"] + [
        f"{name} {f['bytes'] / 2**20:.1f} MiB ({f['files']} files, {f['measured']})"
        for name, f in report["folders"].items()]
    return (f"what travels: {' + '.join(parts)} = {report['total_mib']:.1f} MiB of "
            f"{report['limit_mib']:.0f} MiB ({'fits' if report['fits'] else 'TOO LARGE'})")


# ---- on the GPU machine: install only what the interpreter lacks ---------------------------------------

WHEEL_NAME = re.compile(r"^(?P<dist>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")


def normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def fits_here(wheel: Path) -> bool:
    """Whether this interpreter can use the wheel: its Python/ABI tags and, for a compiled one, Linux x86-64."""
    parts = WHEEL_NAME.match(wheel.name)
    if not parts:
        return False
    major, minor = sys.version_info[:2]
    pythons = {f"cp{major}{minor}", f"py{major}{minor}", f"py{major}"}
    abis = {f"cp{major}{minor}", "abi3", "none"}
    plats = parts["plat"].split(".")
    platform_ok = plats == ["any"] or (sys.platform == "linux" and platform.machine() == "x86_64"
                                       and all(p.endswith("_x86_64") and "linux" in p for p in plats))
    return bool(pythons & set(parts["py"].split("."))) and bool(abis & set(parts["abi"].split("."))) and platform_ok


def install_missing(wheels: Path, site: Path) -> list[dict]:
    """For every distribution the folder carries a wheel of: the interpreter's own where it has one
    (source "image"), else the fitting wheel unpacked into `site` (source "wheel"), else "missing"."""
    carried: dict[str, list[Path]] = {}
    for wheel in sorted(wheels.glob("*.whl")) if wheels.is_dir() else []:
        parts = WHEEL_NAME.match(wheel.name)
        if parts:
            carried.setdefault(normalise(parts["dist"]), []).append(wheel)
    records = []
    for dist, files in sorted(carried.items()):
        try:
            records.append({"dist": dist, "source": "image", "version": metadata.version(dist)})
            continue
        except metadata.PackageNotFoundError:
            pass
        fitting = [w for w in files if fits_here(w)]
        if not fitting:
            records.append({"dist": dist, "source": "missing",
                            "reason": f"no wheel for Python {platform.python_version()} among {[w.name for w in files]}"})
            continue
        records.append({"dist": dist, "source": "wheel", "file": fitting[0].name, "how": install(fitting[0], site)})
    return records


def install(wheel: Path, site: Path) -> str:
    """pip without network or dependencies into `site`; where this interpreter has no pip, the wheel
    unpacked there (a wheel is a zip of what goes into site-packages)."""
    site.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-compile",
                           "--no-cache-dir", "--disable-pip-version-check", "--upgrade", "--target", str(site),
                           str(wheel)], capture_output=True, text=True)
    if done.returncode == 0:
        return "pip"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return f"unzipped (pip: {(done.stderr.strip().splitlines() or ['exit ' + str(done.returncode)])[-1]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    made = sub.add_parser("prepare", help="download the wheels, copy the archive, check the budget")
    made.add_argument("--with-scipy", action="store_true", help="also carry SciPy (only if the image lacks it)")
    made.add_argument("--pythons", nargs="+", default=list(PYTHONS), help="CPython versions of the compiled wheels")
    sub.add_parser("budget", help="the bytes that travel, against the 64 MiB limit")
    args = parser.parse_args()
    os.chdir(ROOT)
    if args.command == "prepare":
        prepare(ROOT, with_scipy=args.with_scipy, pythons=tuple(args.pythons))
    else:
        report = budget(ROOT)
        print(budget_text(report))
        sys.exit(0 if report["fits"] else 1)


if __name__ == "__main__":
    main()
