"""The evidence line every table and figure carries: what ran, on which hardware, with which versions.

    hw = cluster_hardware()      # while connected to Ray: "1 node, 2 CPU, 0 GPU; CPU: AMD EPYC"
    footer(sweep="quick", dataset="fashion_mnist", task="class", hardware=hw, versions=versions())

A number without its hardware and versions cannot be compared with anything (airbench's rule, STYLE.md),
so reports print this under every figure and at the top of every Markdown file.
"""
from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "ray", "mlflow", "optuna")   # the ones whose behaviour a result depends on


def versions() -> dict[str, str]:
    """Python and PACKAGES as installed here, e.g. {"python": "3.11.7", "torch": "2.14.1+cu130", ...}."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def cpu_model() -> str:
    """The CPU's marketing name (Linux: /proc/cpuinfo), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cluster_hardware() -> str:
    """The connected Ray cluster's nodes, CPUs and GPUs (with Ray's accelerator type, e.g. H100), and the
    driver machine's CPU model. Call it inside `cluster.connected()`."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    cpus = sum(n.get("CPU", 0.0) for n in nodes)
    gpus = sum(n.get("GPU", 0.0) for n in nodes)
    # Ray labels each GPU node with a resource "accelerator_type:<model>"; the count is not the GPU count.
    kinds = sorted({key.split(":", 1)[1] for n in nodes for key in n if key.startswith("accelerator_type:")})
    gpu_text = f"{gpus:g} GPU" + (f" ({', '.join(kinds)})" if kinds else "")
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}, {cpus:g} CPU, {gpu_text}; driver CPU: {cpu_model()}"


def versions_text(found: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in found.items())


def footer(*, sweep: str, dataset: str, task: str, hardware: str, found_versions: dict[str, str]) -> str:
    """Two short lines: what ran, then where and with what."""
    return (f"{sweep} | {dataset} / {task} | {hardware}\n"
            f"{versions_text(found_versions)} | {sys.platform}")
