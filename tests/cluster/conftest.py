"""The multi-node Ray cluster the cluster tests run on: `ray.cluster_utils.Cluster`, all on this machine.

    def cluster(three_node_cluster):   # a module's fixture
        with three_node_cluster(node_env={"node_a": {"MIXSWEEP_CACHE": ...}}) as (nodes, names):
            yield nodes, names   # nodes.address; names = {node id: "node_a" | "node_b"}

A head with no CPU (like cluster.yaml's, it runs no trial) and two 1-CPU nodes with the custom
resources `node_a` and `node_b`. Ray gets a short temp dir of its own (unix socket paths have a length
limit) and RAY_AUTH_MODE=disabled explicitly; the helper shuts down the processes of its own Cluster
and never runs the CLI's machine-wide stop.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster


@pytest.fixture(scope="session")
def three_node_cluster():
    """The context manager below (a fixture: test modules cannot import one another's conftest)."""
    return start_three_nodes


@contextmanager
def start_three_nodes(*, env: dict[str, str] | None = None,
                       node_env: dict[str, dict[str, str]] | None = None) -> Iterator[tuple[Cluster, dict[str, str]]]:
    """`env`: the environment every node's processes (and so the trials) inherit; `node_env`: more of it
    per node ("head", "node_a", "node_b"), e.g. a cache folder of each node's own."""
    node_env = node_env or {}
    short = Path(tempfile.mkdtemp(prefix="mxc-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        patch.setenv("RAY_TMPDIR", str(short))   # also where Cluster writes its "current cluster" address
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        assert not ray.is_initialized()
        nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                              "env_vars": node_env.get("head")})
        try:
            names = {}
            for name in ("node_a", "node_b"):
                node = nodes.add_node(num_cpus=1, resources={name: 1}, env_vars=node_env.get(name))
                names[node.node_id] = name
            nodes.wait_for_nodes()
            yield nodes, names
        finally:
            if ray.is_initialized():
                ray.shutdown()
            nodes.shutdown()
            shutil.rmtree(short, ignore_errors=True)
