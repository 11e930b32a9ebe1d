"""The reference store: a shared folder read through each machine's local folder, authoritative, atomic."""
from __future__ import annotations

import io
import json
import math
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from mixunlearn.reference_store import DOWNLOADED, EVALUATED, TRAINED, ReferenceStore, entry_key, state_sha256

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


# ---- the references' metrics -------------------------------------------------------------------------

METRICS_INPUTS = {"format": 1, "original_sha256": "a" * 64, "retrain_sha256": "b" * 64, "mia_samples": 500}


class Evaluation:
    """evaluate() for the store: metrics JSON must carry exactly (NaN, ±Infinity, -0.0, inexact
    decimals); counts its calls."""

    def __init__(self, value: float = 0.1 + 0.2) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> dict:
        self.calls += 1
        return {"retrain": {"ua": self.value, "test_f": float("nan"), "avg_gap": 0.0},
                "original": {"ua": 1 / 3, "asr": float("inf"), "gap": -float("inf"), "du": -0.0}}


def bits(metrics: dict) -> dict:
    """Each float's exact bits (float.hex: -0.0 and 0.0 differ, NaN equals NaN), nested dicts alike."""
    return {k: bits(v) if isinstance(v, dict) else (type(v), v.hex()) for k, v in metrics.items()}


def never() -> dict:
    raise AssertionError("evaluated although the metrics are stored")


def test_metrics_are_evaluated_once_and_read_back_bit_for_bit(tmp_path):
    store = ReferenceStore(tmp_path / "node0")
    evaluate = Evaluation()
    first = store.metrics(METRICS_INPUTS, evaluate, about={"device": "cpu"})
    assert bits(first) == bits(Evaluation()())   # what the evaluating process gets: the values themselves
    assert math.isnan(first["retrain"]["test_f"]) and math.copysign(1, first["original"]["du"]) == -1
    again = ReferenceStore(tmp_path / "node0").metrics(METRICS_INPUTS, never)
    assert bits(again) == bits(first) and evaluate.calls == 1
    record = json.loads((tmp_path / "node0" / "metrics" / f"{entry_key(METRICS_INPUTS)}.json").read_text())
    assert record["inputs"] == METRICS_INPUTS and record["origin"] == EVALUATED and record["device"] == "cpu"
    assert not list(tmp_path.rglob("*.tmp"))
    # A metrics record is not a weights record: the listing of those stays as it was.
    assert not list((tmp_path / "node0").glob("*.json"))


def test_two_nodes_evaluate_once_and_read_the_same_record(tmp_path):
    first, second = nodes(tmp_path)
    evaluate = Evaluation()
    evaluated = first.metrics(METRICS_INPUTS, evaluate)
    read = second.metrics(METRICS_INPUTS, evaluate)
    assert evaluate.calls == 1 and bits(read) == bits(evaluated)
    key = entry_key(METRICS_INPUTS)
    shared = json.loads((tmp_path / "shared" / "metrics" / f"{key}.json").read_text())
    assert "origin" not in shared and bits(shared["metrics"]) == bits(evaluated)
    assert json.loads((second.local / "metrics" / f"{key}.json").read_text())["origin"] == DOWNLOADED
    assert bits(second.metrics(METRICS_INPUTS, never)) == bits(evaluated)


def test_two_nodes_that_miss_at_once_are_both_judged_by_the_first_commit(tmp_path):
    first, second = nodes(tmp_path)

    def evaluate_while_the_other_node_commits() -> dict:
        # Node 1 evaluates (its numbers differ, as two GPUs' may) while node 0 evaluates and commits.
        first.metrics(METRICS_INPUTS, Evaluation(0.5))
        return Evaluation(0.75)()

    got = second.metrics(METRICS_INPUTS, evaluate_while_the_other_node_commits)
    assert got["retrain"]["ua"] == 0.5
    for store in (first, second):
        assert store.metrics(METRICS_INPUTS, never)["retrain"]["ua"] == 0.5
    key = entry_key(METRICS_INPUTS)
    assert json.loads((second.local / "metrics" / f"{key}.json").read_text())["metrics"]["retrain"]["ua"] == 0.5


def test_the_shared_record_wins_over_a_node_s_own_and_an_own_one_fills_an_empty_store(tmp_path):
    # Node 1 evaluated on its own before the cluster shared a store; node 2 too, with other numbers.
    ReferenceStore(tmp_path / "node1").metrics(METRICS_INPUTS, Evaluation(0.5))
    ReferenceStore(tmp_path / "node2").metrics(METRICS_INPUTS, Evaluation(0.75))
    _, node1, node2 = nodes(tmp_path, count=3)
    assert node1.metrics(METRICS_INPUTS, never)["retrain"]["ua"] == 0.5   # uploaded, not evaluated again
    assert node2.metrics(METRICS_INPUTS, never)["retrain"]["ua"] == 0.5   # the store's, not its own
    key = entry_key(METRICS_INPUTS)
    assert json.loads((node2.local / "metrics" / f"{key}.json").read_text())["metrics"]["retrain"]["ua"] == 0.5


def test_other_inputs_are_another_record_and_the_old_one_stays(tmp_path):
    store = ReferenceStore(tmp_path / "node0")
    store.metrics(METRICS_INPUTS, Evaluation(0.5))
    evaluate = Evaluation(0.75)
    other = {**METRICS_INPUTS, "retrain_sha256": "c" * 64}   # a Retrain with other weights
    assert store.metrics(other, evaluate)["retrain"]["ua"] == 0.75 and evaluate.calls == 1
    assert store.metrics(METRICS_INPUTS, never)["retrain"]["ua"] == 0.5
    assert len(list((tmp_path / "node0" / "metrics").glob("*.json"))) == 2
