"""Connecting to Ray, and refusing resource requests no node can satisfy before any trial is queued.

    check_request(cpus_per_trial=1, gpus_per_trial=0.25)   # the numbers alone
    with connected(address=None):          # a fresh local Ray; "auto" or host:port joins a cluster
        check_resources(cpus_per_trial=1, gpus_per_trial=0.25)
        ray.cluster_resources()

A trial asking for more than any node has would sit PENDING forever; Tune only warns. So the request is
checked against every node that is alive and every node type the autoscaler may still start (a
`ray up cluster.yaml` cluster begins with no GPU worker at all: min_workers 0), and refused in one sentence.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from .errors import UsageError

# Ray turns token authentication on by itself when ~/.ray/auth_token exists, and a local driver then
# fails to talk to workers started without it. Set the mode explicitly; a user who runs a token-secured
# cluster sets RAY_AUTH_MODE=token, which is kept.
DEFAULT_AUTH_MODE = "disabled"
# A local Ray for a sweep: no dashboard, and no idle workers started ahead. Ray starts one per CPU for
# tasks, but Tune runs every trial in an actor of its own, which gets a fresh process all the same
# (checked with Ray 2.60): the idle ones would only take CPU from the start-up (0.37 s each, measured).
LOCAL_RAY = {"include_dashboard": False, "_system_config": {"prestart_worker_first_driver": False}}


@contextmanager
def connected(address: str | None) -> Iterator[None]:
    """Ray for the duration of the block: reuses an already initialised Ray (a test's, a notebook's),
    else joins `address` ($RAY_ADDRESS when None) or starts a local instance, and shuts down only what
    it started. The local instance's temp dir is $RAY_TMPDIR/ray (Ray's own variable)."""
    os.environ.setdefault("RAY_AUTH_MODE", DEFAULT_AUTH_MODE)
    if ray.is_initialized():
        yield
        return
    # "local" rather than None: None would silently join any cluster a `ray start` left running here.
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs = LOCAL_RAY if target == "local" else {}
    try:
        ray.init(address=target, logging_level="WARNING", **kwargs)
    except (ConnectionError, ValueError) as error:
        raise UsageError(f"--address {target}: cannot connect to a Ray cluster there ({error}); "
                         "start one with `ray start --head` or leave --address out for a local Ray") from None
    try:
        yield
    finally:
        ray.shutdown()


def check_request(*, cpus_per_trial: float, gpus_per_trial: float) -> None:
    """Refuse per-trial numbers Ray cannot take at all (before connecting to anything)."""
    if cpus_per_trial <= 0:
        raise UsageError(f"--cpus-per-trial {cpus_per_trial}: a trial needs a positive number of CPUs")
    if gpus_per_trial < 0:
        raise UsageError(f"--gpus-per-trial {gpus_per_trial}: use 0 for CPU trials or a positive fraction")
    if gpus_per_trial > 1 and not float(gpus_per_trial).is_integer():
        raise UsageError(f"--gpus-per-trial {gpus_per_trial}: above 1 Ray needs a whole number of GPUs; "
                         "use a fraction up to 1 or an integer")


def check_resources(*, cpus_per_trial: float, gpus_per_trial: float) -> None:
    """Refuse a per-trial request that no alive node of the connected cluster can hold."""
    check_request(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
    nodes = node_shapes()
    most_cpus = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    most_gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    if gpus_per_trial > 0 and most_gpus == 0:
        raise UsageError(f"--gpus-per-trial {gpus_per_trial}: the Ray cluster has no GPU and no node type it can "
                         "scale up to has one; leave the flag out to run on CPUs, or pass --address of a cluster "
                         "with GPUs")
    if gpus_per_trial > most_gpus:
        raise UsageError(f"--gpus-per-trial {gpus_per_trial}: the largest node has {most_gpus:g} GPUs; "
                         f"ask for at most {most_gpus:g}")
    if cpus_per_trial > most_cpus:
        raise UsageError(f"--cpus-per-trial {cpus_per_trial}: the largest node has {most_cpus:g} CPUs; "
                         f"ask for at most {most_cpus:g}")
    fits = [n for n in nodes if n.get("CPU", 0.0) >= cpus_per_trial and n.get("GPU", 0.0) >= gpus_per_trial]
    if not fits:
        raise UsageError(f"--cpus-per-trial {cpus_per_trial} with --gpus-per-trial {gpus_per_trial}: no single "
                         "node has both; lower one of them")


def node_shapes() -> list[dict[str, float]]:
    """The resources of each alive node, plus those of each node type the autoscaler may still start.

    The autoscaler publishes its node types (AWS `available_node_types`, KubeRay worker groups) in the
    GCS; Ray's public API has no reader for them yet, so this uses the one Ray Train and Ray Data use."""
    shapes = [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]
    try:
        config = ray._private.state.state.get_cluster_config()
    except Exception:   # an older or newer Ray without this reader: judge by the alive nodes alone
        config = None
    if config is not None:
        shapes += [dict(group.resources) for group in config.node_group_configs if group.max_count != 0]
    return shapes


def resources_summary() -> dict[str, float]:
    """The cluster's total resources (CPU, GPU, memory in GB, node count) for the sweep's parent run."""
    total = ray.cluster_resources()
    summary = {"CPU": total.get("CPU", 0.0), "GPU": total.get("GPU", 0.0),
               "memory_gb": round(total.get("memory", 0.0) / 1e9, 1),
               "nodes": float(sum(1 for n in ray.nodes() if n.get("Alive")))}
    return {k: (v if math.isfinite(v) else 0.0) for k, v in summary.items()}
