"""Where reference models and their metrics live: a content-addressed store, shared by a cluster, read
through a local folder.

    store = ReferenceStore("~/.cache/mixsweep/references")                         # one machine
    store = ReferenceStore(local, shared="s3://bucket/sweeps/references", lock=cluster_lock)
    entry = store.entry(inputs, train)   # entry.path (a local file), entry.sha256; trains only on a miss
    store.find(inputs), store.record(inputs)   # the committed entry / its record, or None: trains nothing
    numbers = store.metrics(inputs, evaluate)   # the references' metrics; evaluates only on a miss

An entry is keyed by the sha256 of its `inputs` (everything that determines the weights, reference.py)
and laid out the same way in the local folder and in the shared store (a folder or any URI
`pyarrow.fs.FileSystem.from_uri` opens: s3://, gs://, hdfs://):

    <key>.json                 the record: inputs, sha256 of the weights, the weights file's name, who trained it
    <key>-<sha256[:16]>.pt     the state_dict (torch.load(..., weights_only=True))
    metrics/<key>.json         a metrics record: inputs (the models' sha256 among them), the metrics, who evaluated

The record is written last and is the commit marker: an entry exists once its record does. The weights
file is named by its content, so a trainer that lost its lock (killed, or its lease ran out) and the one
that took over never leave a record naming half a file; every file is written under a private tmp name
and moved into place.

With a shared store it is authoritative and the local folder is a read-through cache:
- the store has the entry: use the local copy if it has the same sha256, else download it (a local copy
  trained elsewhere is replaced: every trial of a cluster must use the same bytes);
- the store has none: take `lock(key)` (one holder per key across the cluster), look again, then upload
  the local copy if this node has one, else train, write it locally, upload the weights and last the record.
Without one, the local folder is the store and `lock` defaults to a flock on it, which the kernel
releases when a process dies.

The sha256 is taken over the tensors (names, dtypes, shapes, values in key order), not the file: two
torch.save calls of equal weights give different bytes.

A metrics record (`metrics`) is the references' evaluation, stored once per content so that no trial
pays for it again and every trial of a cluster is judged by the same numbers. It is one small JSON file
(in a folder of its own, so a listing of *.json above stays a listing of weight records), read like an
entry: the shared copy first, cached in the local folder; when the store has none, a node's own record
fills it. It is evaluated outside the lock (seconds of work), then committed under it only if no process
committed one meanwhile; whoever comes second takes the committed record. JSON round-trips Python floats
exactly, NaN and Infinity included, and every caller gets the values parsed back from the record, so the
process that evaluated sees the very numbers all later readers see.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch

# lock(key) -> a context manager held while an entry is checked, trained and committed.
LockFactory = Callable[[str], AbstractContextManager]
# Origins a local record can have: what a count of trainings reads.
TRAINED = "trained"
EVALUATED = "evaluated"    # a metrics record this node computed
DOWNLOADED = "downloaded"
METRICS = "metrics"        # the folder of metrics records, in the local folder and in the shared store


@dataclass(frozen=True)
class Entry:
    key: str
    path: Path            # the weights in the local folder
    sha256: str           # state_sha256 of those weights
    record: dict[str, Any]


def entry_key(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state_dict's tensors: each name, dtype, shape and the values' bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def record_path(weights: Path) -> Path:
    """The record beside a weights file <key>-<sha>.pt (or a format-1 <key>.pt)."""
    return weights.with_name(weights.name.split("-")[0].removesuffix(".pt") + ".json")


class ReferenceStore:
    def __init__(self, local: str | Path, shared: str | None = None, *, lock: LockFactory | None = None):
        """
        Args:
            local: this machine's folder (created if missing): the whole store without `shared`, its cache with.
            shared: a folder or URI every node reads and writes; None = the local folder alone.
            lock: lock(key) for a miss; None = a flock in the local folder (one machine's processes only:
                a cluster passes a cluster-wide lock, trainables/references.py).
        """
        self.local = Path(local).expanduser()
        self.local.mkdir(parents=True, exist_ok=True)
        self.shared = shared
        if shared is not None:
            self.fs, self.root = pafs.FileSystem.from_uri(shared if "://" in shared
                                                          else str(Path(shared).expanduser().resolve()))
            self.fs.create_dir(self.root, recursive=True)
        self.lock = lock or self.local_lock

    def __repr__(self) -> str:
        return f"ReferenceStore(local={str(self.local)!r}, shared={self.shared!r})"

    # ---- the lookup ------------------------------------------------------------------------------------

    def entry(self, inputs: dict[str, Any], train: Callable[[], dict[str, torch.Tensor]], *,
              about: dict[str, Any] | None = None) -> Entry:
        """The entry for `inputs`, calling `train()` (a CPU state_dict) only when no process anywhere has it.

        `about` is added to the record of a new entry (e.g. the device it trained on)."""
        key = entry_key(inputs)
        if self.shared is None:
            found = self.read_local(key)
            if found is None:
                with self.lock(key):
                    # Another process may have trained it while we waited.
                    found = self.read_local(key) or self.train_local(key, inputs, train, about)
            return found
        record = self.read_shared(key)
        if record is None:
            with self.lock(key):
                record = self.read_shared(key)
                if record is None:
                    found = self.read_local(key) or self.train_local(key, inputs, train, about)
                    self.upload(found)
                    return found
        return self.read_through(key, record)

    def find(self, inputs: dict[str, Any]) -> Entry | None:
        """The committed entry for `inputs` (read through to the local folder), or None: trains nothing."""
        key = entry_key(inputs)
        if self.shared is None:
            return self.read_local(key)
        record = self.read_shared(key)
        return None if record is None else self.read_through(key, record)

    def record(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        """The committed record for `inputs` (its sha256, train_seconds, ...), or None; downloads no weights."""
        key = entry_key(inputs)
        if self.shared is None:
            path = self.local / f"{key}.json"
            return json.loads(path.read_text()) if path.is_file() and self.read_local(key) is not None else None
        return self.read_shared(key)

    def read_local(self, key: str) -> Entry | None:
        path = self.local / f"{key}.json"
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        weights = self.local / record.get("weights", f"{key}.pt")
        if not weights.is_file():
            return None
        if "sha256" not in record:   # a format-1 entry: hash it once, keep the record current
            record["sha256"] = state_sha256(torch.load(weights, map_location="cpu", weights_only=True))
            record["weights"] = weights.name
            write_local(path, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
        return Entry(key, weights, record["sha256"], record)

    def train_local(self, key: str, inputs: dict[str, Any], train: Callable[[], dict[str, torch.Tensor]],
                    about: dict[str, Any] | None) -> Entry:
        started = time.perf_counter()
        state = train()
        seconds = time.perf_counter() - started
        sha = state_sha256(state)
        record = {"key": key, "inputs": inputs, "sha256": sha, "weights": f"{key}-{sha[:16]}.pt",
                  "train_seconds": round(seconds, 3), **(about or {}), "torch": torch.__version__,
                  "host": socket.gethostname(), "pid": os.getpid(),
                  "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        weights = self.local / record["weights"]
        write_local(weights, lambda tmp: torch.save(state, tmp))
        write_local(self.local / f"{key}.json",
                    lambda tmp: tmp.write_text(json.dumps({**record, "origin": TRAINED}, indent=2)))
        return Entry(key, weights, sha, record)

    # ---- the shared store ------------------------------------------------------------------------------

    def read_shared(self, key: str) -> dict[str, Any] | None:
        return self.read_shared_json(f"{key}.json")

    def read_shared_json(self, name: str) -> dict[str, Any] | None:
        path = f"{self.root}/{name}"
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(path) as stream:
            return json.loads(stream.read())

    def read_through(self, key: str, record: dict[str, Any]) -> Entry:
        """The shared entry `record` names, from the local folder when it holds the same weights."""
        local = self.read_local(key)
        if local is not None and local.sha256 == record["sha256"]:
            return local
        weights = self.local / record["weights"]
        write_local(weights, lambda tmp: self.get(record["weights"], tmp))
        got = state_sha256(torch.load(weights, map_location="cpu", weights_only=True))
        if got != record["sha256"]:
            weights.unlink(missing_ok=True)
            raise RuntimeError(f"{self.shared}/{record['weights']}: its weights hash to {got[:16]}, not to the "
                               f"{record['sha256'][:16]} its record {key}.json names; delete both files so the "
                               "next run trains the entry again")
        write_local(self.local / f"{key}.json", lambda tmp: tmp.write_text(
            json.dumps({**record, "origin": DOWNLOADED, "source": self.shared}, indent=2)))
        if local is not None and local.path != weights:
            local.path.unlink(missing_ok=True)   # the store's entry replaced this node's own
        return Entry(key, weights, record["sha256"], record)

    def upload(self, entry: Entry) -> None:
        """The weights, then the record (the commit), each via a tmp name moved into place."""
        record = {k: v for k, v in entry.record.items() if k not in ("origin", "source")}
        self.put(entry.path.name, entry.path.read_bytes())
        self.put(f"{entry.key}.json", json.dumps(record, indent=2).encode())

    def get(self, name: str, target: Path) -> None:
        with self.fs.open_input_stream(f"{self.root}/{name}") as stream:
            target.write_bytes(stream.read())

    def put(self, name: str, data: bytes) -> None:
        tmp = f"{self.root}/{name}.{uuid.uuid4().hex}.tmp"
        try:
            with self.fs.open_output_stream(tmp) as stream:
                stream.write(data)
            self.fs.move(tmp, f"{self.root}/{name}")
        finally:
            if self.fs.get_file_info(tmp).type == pafs.FileType.File:
                self.fs.delete_file(tmp)

    # ---- the references' metrics -----------------------------------------------------------------------

    def metrics(self, inputs: dict[str, Any], evaluate: Callable[[], dict[str, Any]], *,
                about: dict[str, Any] | None = None) -> dict[str, Any]:
        """The metrics stored for `inputs`, calling `evaluate()` only when no process anywhere has stored them.

        Args:
            inputs: everything that determines the numbers (the models' sha256, the data, the split, the
                evaluation settings, the device type); JSON-able. Its sha256 is the record's key.
            evaluate: () -> a JSON-able dict (floats, NaN and Infinity included) of the metrics.
            about: added to a new record (e.g. the device it was evaluated on); not part of the key.

        Returns the record's metrics as parsed back from its JSON, also right after evaluating them.
        """
        key = entry_key(inputs)
        record = self.committed_metrics(key)
        if record is None:
            # A record this node evaluated before the store was shared fills an empty store, as weights do.
            own = self.read_local_metrics(key) if self.shared is not None else None
            record = own or self.evaluate_metrics(key, inputs, evaluate, about)
            # Evaluating took seconds, and another process may have missed at the same time: look again
            # under the lock (held for this look and a few-KB write, never while evaluating) and keep a
            # record that is there, so every process of the store is judged by one record. The race that
            # remains needs two processes whose locks do not meet (a `mixsweep train` under its local flock
            # beside a sweep under the cluster lock, on one shared store; or a lease lost while held) to
            # look again before either has written: both commit, the later move wins the file, and the
            # earlier process is judged by its own numbers this once.
            with self.lock(key):
                record = self.committed_metrics(key) or self.commit_metrics(key, record)
        return record["metrics"]

    def committed_metrics(self, key: str) -> dict[str, Any] | None:
        """The record every process is judged by: the shared store's (cached in the local folder), or without
        a shared store the local folder's."""
        if self.shared is None:
            return self.read_local_metrics(key)
        record = self.read_shared_json(f"{METRICS}/{key}.json")
        if record is not None:
            local = self.read_local_metrics(key)
            if local is None or json.dumps(local["metrics"]) != json.dumps(record["metrics"]):
                self.write_local_metrics(key, {**record, "origin": DOWNLOADED, "source": self.shared})
        return record

    def read_local_metrics(self, key: str) -> dict[str, Any] | None:
        path = self.local / METRICS / f"{key}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def write_local_metrics(self, key: str, record: dict[str, Any]) -> None:
        (self.local / METRICS).mkdir(exist_ok=True)
        write_local(self.local / METRICS / f"{key}.json", lambda tmp: tmp.write_text(json.dumps(record, indent=2)))

    def evaluate_metrics(self, key: str, inputs: dict[str, Any], evaluate: Callable[[], dict[str, Any]],
                         about: dict[str, Any] | None) -> dict[str, Any]:
        started = time.perf_counter()
        metrics = evaluate()
        return {"key": key, "inputs": inputs, "metrics": metrics,
                "evaluate_seconds": round(time.perf_counter() - started, 3), **(about or {}),
                "torch": torch.__version__, "host": socket.gethostname(), "pid": os.getpid(),
                "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "origin": EVALUATED}

    def commit_metrics(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        """Write `record` to the local folder and, without its origin, to the shared store; return it as
        parsed back from the JSON written."""
        shared = {k: v for k, v in record.items() if k not in ("origin", "source")}
        data = json.dumps(shared, indent=2)
        self.write_local_metrics(key, record)
        if self.shared is not None:
            self.fs.create_dir(f"{self.root}/{METRICS}", recursive=True)
            self.put(f"{METRICS}/{key}.json", data.encode())
        return json.loads(data)

    # ---- the default lock ------------------------------------------------------------------------------

    @contextmanager
    def local_lock(self, key: str) -> Iterator[None]:
        """An exclusive flock on <local>/<key>.lock; the kernel releases it if the holder dies."""
        fd = os.open(self.local / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def write_local(path: Path, write: Callable[[Path], Any]) -> None:
    """Write via a private tmp file and rename, so readers see the whole file or none of it."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
