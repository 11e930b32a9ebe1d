"""The reference store: a shared folder read through each machine's local folder, authoritative, atomic."""
from __future__ import annotations

import io
import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from mixunlearn.reference_store import DOWNLOADED, TRAINED, ReferenceStore, entry_key, state_sha256

INPUTS = {"role": "original", "model": "cnn_small", "data": "fingerprint", "format": 1}


class Trainer:
    """train() for the store: a small state_dict drawn from `seed`; counts its calls."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.calls = 0

    def __call__(self) -> dict[str, torch.Tensor]:
        self.calls += 1
        generator = torch.Generator().manual_seed(self.seed)
        return {"conv.weight": torch.randn(4, 1, 3, 3, generator=generator), "fc.bias": torch.zeros(10),
                "bn.num_batches_tracked": torch.tensor(7)}


def nodes(tmp_path: Path, count: int = 2) -> list[ReferenceStore]:
    """`count` machines, each with a local folder of its own, sharing one store folder."""
    return [ReferenceStore(tmp_path / f"node{i}", shared=str(tmp_path / "shared")) for i in range(count)]


def local_record(store: ReferenceStore, key: str) -> dict:
    return json.loads((store.local / f"{key}.json").read_text())


def test_the_hash_is_of_the_tensors_not_of_the_file():
    state = Trainer()()
    first, second = io.BytesIO(), io.BytesIO()
    torch.save(state, first)
    torch.save({k: v.clone() for k, v in reversed(state.items())}, second)
    assert state_sha256(state) == state_sha256({k: v.clone() for k, v in reversed(state.items())})
    assert state_sha256({**state, "conv.weight": state["conv.weight"].contiguous(memory_format=torch.channels_last)}) == state_sha256(state)
    assert first.getvalue() != second.getvalue()   # the same weights (saved in another order), other bytes
    changed = dict(state, **{"fc.bias": state["fc.bias"] + 1e-7})
    assert state_sha256(changed) != state_sha256(state)
    assert state_sha256({**state, "fc.bias": state["fc.bias"].double()}) != state_sha256(state)
    assert state_sha256({"renamed": state["fc.bias"]}) != state_sha256({"fc.bias": state["fc.bias"]})


def test_one_node_trains_the_others_read_it_through_their_own_folders(tmp_path):
    first, second = nodes(tmp_path)
    train = Trainer()
    trained = first.entry(INPUTS, train, about={"device": "cpu"})
    read = second.entry(INPUTS, train)
    assert train.calls == 1
    assert read.sha256 == trained.sha256 == state_sha256(torch.load(read.path, weights_only=True))
    assert read.path.parent == second.local and trained.path.parent == first.local
    key = entry_key(INPUTS)
    assert local_record(first, key)["origin"] == TRAINED and local_record(second, key)["origin"] == DOWNLOADED
    shared = json.loads((tmp_path / "shared" / f"{key}.json").read_text())
    assert shared["sha256"] == trained.sha256 and shared["device"] == "cpu" and "origin" not in shared
    assert (tmp_path / "shared" / shared["weights"]).is_file()
    # A second lookup on either node is a local hit.
    assert second.entry(INPUTS, train).path == read.path and train.calls == 1
    assert not list(tmp_path.rglob("*.tmp"))


def test_the_shared_store_wins_over_a_node_s_own_copy(tmp_path):
    # Node 1 trained the entry on its own before the cluster shared a store (GPU training is not
    # bit-reproducible: another seed stands in for another run of the same recipe).
    own = ReferenceStore(tmp_path / "node1").entry(INPUTS, Trainer(seed=1))
    first, second = nodes(tmp_path)
    shared = first.entry(INPUTS, Trainer(seed=0))
    assert shared.sha256 != own.sha256
    train = Trainer(seed=1)
    used = second.entry(INPUTS, train)
    assert train.calls == 0
    assert used.sha256 == shared.sha256 and local_record(second, used.key)["sha256"] == shared.sha256
    assert not own.path.exists()   # the node's own copy is gone, not left beside the store's


def test_a_node_s_local_entry_fills_an_empty_store_without_training(tmp_path):
    own = ReferenceStore(tmp_path / "node0").entry(INPUTS, Trainer())
    first, second = nodes(tmp_path)
    train = Trainer(seed=5)
    assert first.entry(INPUTS, train).sha256 == own.sha256
    assert second.entry(INPUTS, train).sha256 == own.sha256
    assert train.calls == 0


def test_a_half_uploaded_entry_is_trained_again_and_committed_whole(tmp_path):
    # A trainer killed while uploading left part of its weights and no record: the entry does not exist.
    state = Trainer()()
    sha = state_sha256(state)
    key = entry_key(INPUTS)
    (tmp_path / "shared").mkdir()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    (tmp_path / "shared" / f"{key}-{sha[:16]}.pt").write_bytes(buffer.getvalue()[:100])
    first, second = nodes(tmp_path)
    train = Trainer()
    assert first.entry(INPUTS, train).sha256 == sha and train.calls == 1
    read = second.entry(INPUTS, train)
    assert train.calls == 1 and state_sha256(torch.load(read.path, weights_only=True)) == sha


def test_weights_that_do_not_match_their_record_are_refused_naming_the_files(tmp_path):
    first, second = nodes(tmp_path)
    entry = first.entry(INPUTS, Trainer())
    torch.save(Trainer(seed=3)(), tmp_path / "shared" / entry.path.name)
    with pytest.raises(RuntimeError, match=rf"{entry.path.name}: its weights hash to .*delete both files"):
        second.entry(INPUTS, Trainer())
    assert not (second.local / entry.path.name).exists()


def test_the_lock_is_taken_only_on_a_miss(tmp_path):
    taken = []

    @contextmanager
    def lock(key: str):
        taken.append(key)
        yield

    first = ReferenceStore(tmp_path / "node0", shared=str(tmp_path / "shared"), lock=lock)
    second = ReferenceStore(tmp_path / "node1", shared=str(tmp_path / "shared"), lock=lock)
    first.entry(INPUTS, Trainer())
    second.entry(INPUTS, Trainer())
    first.entry(INPUTS, Trainer())
    assert taken == [entry_key(INPUTS)]
