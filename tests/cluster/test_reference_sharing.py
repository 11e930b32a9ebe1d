"""f_D and Retrain are trained (and their metrics committed) once per cluster, whatever node a trial lands
on, and every run says which.

The cluster (conftest.py's `three_node_cluster`) gives each node a cache folder of its own, as separate
machines have; the sweep's storage is one folder they all reach, and with it the reference store
(<storage>/references). A 4-trial sweep over tiny real Fashion-MNIST runs through `mixsweep run
--address`; the tests count the trainings and the evaluations in the nodes' caches (each local record
says whether that node trained or evaluated the entry or downloaded it), read the hashes every child
run recorded, mix in a run with other references to see `export` and `compare` refuse, and SIGKILL a
process that holds a reference's lock mid-upload to see another node take the lock over and finish
the entry.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import torch
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from ray import cloudpickle

from mixsweep import state as sweep_state
from mixsweep.cli import main
from mixunlearn.reference_store import EVALUATED, METRICS, TRAINED, ReferenceStore, entry_key, state_sha256
from trainables import records
from trainables.references import ORIGINAL_SHA256_TAG, RETRAIN_SHA256_TAG, LeaseLock

NAME = "shared-refs"
NODES = ("head", "node_a", "node_b")
# Fashion-MNIST from the Debian package, 40 training images per class: references train in a second.
SPACE = {
    "base": {"dataset": "fashion_mnist", "train_subset": 40, "test_subset": 20, "task": "class",
             "forget_class": 0, "model": "cnn_small", "ref_epochs": 3, "epochs": 1, "batch_size": 16,
             "mia_samples": 100, "eval_batch_size": 512},
    "search": {"alpha": {"low": 0.1, "high": 4.0, "log": True}},
    "objectives": [{"metric": "avg_gap", "mode": "min"}],
    "sweep": {"trials": 4, "concurrency": 2, "grace_epochs": 1},
}
SWEEP_TIMEOUT_S = 420
LEASE_S = 2.0   # the takeover test's lease: a killed holder's key is free 2 s after its last renewal


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> dict[str, Path]:
    return {name: tmp_path_factory.mktemp(f"cache-{name}") for name in NODES}


@pytest.fixture(scope="module")
def cluster(caches, three_node_cluster):
    with three_node_cluster(node_env={name: {"MIXSWEEP_CACHE": str(caches[name])} for name in NODES}) as built:
        yield built


@pytest.fixture(scope="module")
def sweep(cluster, caches, mlflow_server, tmp_path_factory):
    """`mixsweep run` against the cluster with one shared storage folder: state, storage, children, output."""
    nodes, _ = cluster
    storage = tmp_path_factory.mktemp("shared-storage")
    space = tmp_path_factory.mktemp("space") / "tiny.yaml"
    space.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    # The driver names no cache: each trial uses its node's (a driver's path means nothing on another machine).
    env = {k: v for k, v in os.environ.items() if k != "MIXSWEEP_CACHE"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mixsweep", "run", str(space), "--address", nodes.address, "--storage",
         str(storage), "--tracking-uri", mlflow_server, "--name", NAME],
        env={**env, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True,
        timeout=SWEEP_TIMEOUT_S)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    print(f"4-trial sweep on the 3-node cluster with separate caches: {time.monotonic() - started:.0f} s")
    state = sweep_state.load(NAME, str(storage))
    client = MlflowClient(mlflow_server)
    children = client.search_runs([state.experiment_id], run_view_type=ViewType.ALL,
                                  filter_string=f"tags.`{records.PARENT_TAG}` = '{state.parent_run_id}'")
    return state, storage, children, output


def local_records(cache: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (cache / "references").glob("*.json")]


def shared_records(storage: Path) -> dict[str, dict]:
    """role -> the store's record."""
    found = [json.loads(p.read_text()) for p in (storage / "references").glob("*.json")]
    return {record["inputs"]["role"]: record for record in found}


# ---- one training per reference, one pair of hashes per sweep ---------------------------------------------

def test_each_reference_is_trained_once_for_the_whole_cluster(cluster, caches, sweep):
    _, node_names = cluster
    state, storage, children, _ = sweep
    assert state.references == str(storage / "references")
    placed = {node_names[child.data.tags[records.NODE_ID_TAG]] for child in children}
    assert placed == {"node_a", "node_b"}, f"the trials ran on {placed}: the test needs both worker nodes"

    stored = shared_records(storage)
    assert set(stored) == {"original", "retrain"}
    trainings = {role: sum(r.get("origin") == TRAINED and r["key"] == record["key"]
                           for name in NODES for r in local_records(caches[name]))
                 for role, record in stored.items()}
    print(f"trainings per reference over the 3 nodes' caches: {trainings}")
    assert trainings == {"original": 1, "retrain": 1}
    for name in ("node_a", "node_b"):   # the other node downloaded what it did not train
        assert {r["sha256"] for r in local_records(caches[name])} == {r["sha256"] for r in stored.values()}
    assert not local_records(caches["head"])   # the head ran no trial


def test_the_references_are_evaluated_once_for_the_whole_cluster(caches, sweep):
    _, storage, _, _ = sweep
    stored = shared_records(storage)
    [record] = [json.loads(p.read_text()) for p in (storage / "references" / METRICS).glob("*.json")]
    assert record["inputs"]["original_sha256"] == stored["original"]["sha256"]
    assert record["inputs"]["retrain_sha256"] == stored["retrain"]["sha256"]
    local = [json.loads(p.read_text())
             for name in NODES for p in (caches[name] / "references" / METRICS).glob("*.json")]
    # Two trials that missed at once may both have evaluated; one record was committed and both nodes use it.
    assert sum(r["origin"] == EVALUATED for r in local) == 1
    assert len(local) == 2 and {json.dumps(r["metrics"]) for r in local} == {json.dumps(record["metrics"])}


def test_every_child_run_carries_the_same_two_hashes(sweep):
    _, storage, children, _ = sweep
    stored = shared_records(storage)
    assert len(children) == 4 and {child.info.status for child in children} == {"FINISHED"}
    hashes = [(child.data.tags[ORIGINAL_SHA256_TAG], child.data.tags[RETRAIN_SHA256_TAG]) for child in children]
    print(f"(f_D, Retrain) sha256 pairs over the {len(children)} child runs: {len(set(hashes))} distinct")
    assert set(hashes) == {(stored["original"]["sha256"], stored["retrain"]["sha256"])}
    weights = storage / "references" / stored["retrain"]["weights"]
    assert state_sha256(torch.load(weights, weights_only=True)) == stored["retrain"]["sha256"]


def test_export_and_compare_refuse_a_run_measured_against_other_references(sweep, mlflow_server, capsys):
    state, storage, children, _ = sweep
    client = MlflowClient(mlflow_server)
    odd, other = children[0], children[1]
    client.set_tag(odd.info.run_id, RETRAIN_SHA256_TAG, "f" * 64)   # as if its node had trained its own Retrain
    try:
        assert main(["export", NAME, "--storage", str(storage)]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and odd.info.run_name in error and "ffffffffffff" in error, error
        assert error.startswith(f"mixsweep: error: export {NAME}: ") and "--references" in error
        assert main(["compare", odd.info.run_id, other.info.run_id, "--tracking-uri", mlflow_server]) == 2
        error = [line for line in capsys.readouterr().err.splitlines() if "error" in line]   # not MLflow's progress bar
        assert len(error) == 1 and error[0].startswith("mixsweep: error: compare: "), error
        assert odd.info.run_id[:8] in error[0] and other.info.run_id[:8] in error[0]
    finally:
        client.set_tag(odd.info.run_id, RETRAIN_SHA256_TAG, other.data.tags[RETRAIN_SHA256_TAG])
    assert main(["export", NAME, "--storage", str(storage)]) == 0


# ---- a trainer killed while it holds the lock ---------------------------------------------------------------

def small_state() -> dict[str, torch.Tensor]:
    return {"weight": torch.arange(40_000, dtype=torch.float32).reshape(200, 200), "bias": torch.ones(200)}


class UploadThatHangs(ReferenceStore):
    """Writes half of the weights straight into their final name, says so, then hangs: a trainer killed
    mid-upload, on a store without atomic moves."""

    def __init__(self, *args, started: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.started = started

    def put(self, name: str, data: bytes) -> None:
        if name.endswith(".pt"):
            with self.fs.open_output_stream(f"{self.root}/{name}") as stream:
                stream.write(data[: len(data) // 2])
            Path(self.started).write_text(str(os.getpid()))
            time.sleep(600)
        super().put(name, data)


@ray.remote(num_cpus=0)
class Trainer:
    """A process on one node asking its store for the entry, like a trial's prepare()."""

    def fetch(self, shared: str, inputs: dict, *, hang_in_upload: str | None = None) -> dict:
        local = Path(os.environ["MIXSWEEP_CACHE"]) / "references"
        lock = LeaseLock(lease_s=LEASE_S, poll_s=0.2)
        store = (UploadThatHangs(local, shared, lock=lock, started=hang_in_upload) if hang_in_upload
                 else ReferenceStore(local, shared, lock=lock))
        entry = store.entry(inputs, small_state)
        return {"sha256": entry.sha256, "pid": os.getpid(), "path": str(entry.path)}


def test_a_trainer_killed_holding_the_lock_is_taken_over_and_nothing_hangs(cluster, caches, tmp_path):
    nodes, _ = cluster
    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the workers cannot import this test file
    ray.init(address=nodes.address, logging_level="WARNING")
    try:
        shared = str(tmp_path / "references")
        inputs = {"role": "original", "test": "takeover", "at": time.time()}
        started = tmp_path / "upload-started"
        first = Trainer.options(resources={"node_a": 0.01}).remote()
        second = Trainer.options(resources={"node_b": 0.01}).remote()
        hung = first.fetch.remote(shared, inputs, hang_in_upload=str(started))
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline, "the first trainer never reached its upload"
            if ray.wait([hung], timeout=0.1)[0]:
                pytest.fail(f"the first trainer returned before its upload: {ray.get(hung)}")
        waiting = second.fetch.remote(shared, inputs)
        # The holder renews its lease: well past LEASE_S, the second one still waits.
        ready, _ = ray.wait([waiting], timeout=2 * LEASE_S)
        assert not ready, "the second trainer did not wait for the lock"

        os.kill(int(started.read_text()), signal.SIGKILL)
        killed = time.monotonic()
        took_over = ray.get(waiting, timeout=60)
        print(f"lock taken over and the entry finished {time.monotonic() - killed:.1f} s after the SIGKILL "
              f"(lease {LEASE_S:g} s)")
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(hung, timeout=30)
    finally:
        ray.shutdown()

    key = entry_key(inputs)
    record = json.loads(Path(shared, f"{key}.json").read_text())
    assert record["sha256"] == took_over["sha256"] == state_sha256(small_state())
    assert record["pid"] == took_over["pid"]   # the second process trained it itself
    assert state_sha256(torch.load(Path(shared, record["weights"]), weights_only=True)) == record["sha256"]
    assert Path(took_over["path"]).parent == caches["node_b"] / "references"
