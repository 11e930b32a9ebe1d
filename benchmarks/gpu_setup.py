"""Part 1 of the GPU check: what the bare machine lacks, installed from what travelled; what it has, recorded.

Steps, each recorded on its own (a failed step fails the part, the later steps still run):
- wheels: the carried ones (gpu_carry.install_missing) for each distribution the interpreter lacks;
- attackers: whether scikit-learn imports now (parts 4 and 6 are skipped where it does not);
- nvidia-smi, torch, CUDA, cuDNN and the card;
- data: the CIFAR-10 archive verified and decoded into the data cache (mixunlearn.data), once;
- code: the commit where the copy has its .git, and a fingerprint of the code either way.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import traceback

from gpu_carry import install_missing
from gpu_common import ROOT

FINGERPRINTED = ("mixunlearn", "benchmarks", "search_spaces")   # the code whose figures these are


def setup(ctx) -> None:
    record = ctx.record
    failed = []

    def step(name: str, action) -> None:
        started = time.perf_counter()
        try:
            record.result(name, {**action(), "seconds": round(time.perf_counter() - started, 2)})
        except Exception as exc:
            failed.append(name)
            record.result(name, {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                                 "seconds": round(time.perf_counter() - started, 2)})
            print(f"setup step {name} failed: {type(exc).__name__}: {exc}", flush=True)

    site = ctx.work / "site"
    step("interpreter", lambda: {"python": sys.executable, "version": sys.version.split()[0],
                                 "site": str(site), "wheels": str(ctx.wheels)})
    step("wheels", lambda: wheels(ctx, site))
    step("attackers", attackers)
    step("nvidia_smi", nvidia_smi)
    step("torch", lambda: torch_versions(ctx))
    step("data", data)
    step("code", code)
    if failed:
        raise RuntimeError(f"setup steps failed: {', '.join(failed)} (each one's error is in its result)")


def wheels(ctx, site) -> dict:
    shutil.rmtree(site, ignore_errors=True)   # a fresh site: "image" then always means the interpreter's own
    if not ctx.wheels.is_dir():
        return {"folder": str(ctx.wheels), "present": False, "distributions": [],
                "note": "no carried wheels: run `python benchmarks/gpu_carry.py prepare` on the CPU machine"}
    records = install_missing(ctx.wheels, site)
    for r in records:
        print(f"wheel {r['dist']}: {r['source']} {r.get('version') or r.get('file') or r.get('reason')}", flush=True)
    return {"folder": str(ctx.wheels), "present": True, "distributions": records,
            "installed": [r["dist"] for r in records if r["source"] == "wheel"]}


def attackers() -> dict:
    """scikit-learn as the later parts import it: a fresh interpreter on their path (the site included)."""
    done = subprocess.run([sys.executable, "-c", ATTACKERS_PROBE], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return {"importable": False, "error": (done.stderr.strip().splitlines() or ["?"])[-1],
                "consequence": "parts 4 (evaluation) and 6 (forgetting) are skipped"}
    version, location = done.stdout.split("\n")[:2]
    return {"importable": True, "sklearn": version, "location": location}


ATTACKERS_PROBE = "import sklearn, sklearn.svm; print(sklearn.__version__); print(sklearn.__file__)"


def nvidia_smi() -> dict:
    if not shutil.which("nvidia-smi"):
        return {"present": False}
    query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                            "--format=csv"], capture_output=True, text=True, timeout=60)
    full = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=60)
    return {"present": True, "query": query.stdout.strip(), "nvidia_smi": full.stdout.strip(),
            "error": (query.stderr + full.stderr).strip() or None}


def torch_versions(ctx) -> dict:
    from gpu_common import part_device

    device = part_device(ctx)   # fails here, with its reason, where the GPU run finds no CUDA device
    import torch

    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "device": str(device), "cuda_available": torch.cuda.is_available(), **ctx.record.data.get("process", {})}


def data() -> dict:
    """The full CIFAR-10 training and test sets: the archive verified against its SHA256SUMS and decoded
    into <data cache>/datasets once (mixunlearn.data.load_dataset); every later part reads the cache."""
    from mixunlearn.data import default_cache_dir, load_dataset

    held = load_dataset("cifar10")
    return {"source": held.source, "train": list(held.train_images.shape), "test": list(held.test_images.shape),
            "fingerprint": held.fingerprint[:16], "cache": str(default_cache_dir() / "datasets"),
            "shared_data": os.environ.get("MIXSWEEP_SHARED_DATA")}


def code() -> dict:
    """The commit (where git and .git came along) and a sha256 over the measured code's files, which the
    CPU machine recomputes to name the commit of a copy that had no .git."""
    try:
        from code_version import code_measured

        commit = code_measured() or None
    except Exception as exc:   # no git on the machine, or no .git in the copy
        commit = f"unknown ({type(exc).__name__})"
    return {"commit": commit, "fingerprint": code_fingerprint()}


def code_fingerprint() -> str:
    digest = hashlib.sha256()
    for folder in FINGERPRINTED:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".yaml", ".sh") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
