"""f_D and Retrain: training learns, is reproducible, and the content-addressed cache trains each entry once."""
from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest
import torch

import mixunlearn.reference as reference
from mixunlearn.config import UnlearnConfig
from mixunlearn.data import ImageData, load_data
from mixunlearn.models import build_model
from mixunlearn.reference import reference_models, tensor_digest, train_classifier
from mixunlearn.reference_store import DOWNLOADED, ReferenceStore, entry_key, record_path, state_sha256
from mixunlearn.run import Prepared, prepare, reference_metrics_inputs
from mixunlearn.tasks import make_split

# 20 training images per class, one epoch of 13 steps: "tiny" is separated in well under a second.
CFG = UnlearnConfig(dataset="tiny", train_subset=20, model="cnn_small", task="class", forget_class=0,
                    ref_epochs=1, ref_lr=2e-3, ref_batch_size=16)


@pytest.fixture(scope="module")
def tiny() -> ImageData:
    return load_data(CFG)


@pytest.fixture
def count_trainings(monkeypatch) -> list[int]:
    """Counts calls of train_classifier made by reference_models (one per model trained)."""
    calls: list[int] = []
    real = reference.train_classifier

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(reference, "train_classifier", spy)
    return calls


@pytest.fixture
def count_evaluations(monkeypatch) -> list[int]:
    """Counts calls of Prepared.evaluate (two per prepare() that evaluates f_D and Retrain)."""
    calls: list[int] = []
    real = Prepared.evaluate

    def spy(self, model):
        calls.append(1)
        return real(self, model)

    monkeypatch.setattr(Prepared, "evaluate", spy)
    return calls


def fresh_cnn(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("cnn_small", num_classes=10, in_channels=1, image_size=28)


def accuracy(model: torch.nn.Module, data: ImageData) -> float:
    with torch.no_grad():
        return (model(data.normalize(data.test_images)).argmax(1) == data.test_labels).float().mean().item()


def digest(model: torch.nn.Module) -> str:
    return tensor_digest(torch.cat([v.detach().flatten().double() for v in model.state_dict().values()]))


# ---- training ------------------------------------------------------------------------------------


def test_cnn_small_learns_tiny(tiny):
    model = fresh_cnn()
    before = accuracy(model.eval(), tiny)
    train_classifier(model, tiny, torch.arange(len(tiny.train_labels)), tiny.train_labels, epochs=2,
                     batch_size=16, lr=1e-3, weight_decay=1e-4, augment=False, seed=0, device="cpu")
    assert not model.training
    assert before < 0.3 and accuracy(model, tiny) >= 0.95


def test_same_seed_gives_identical_weights_and_another_seed_does_not(tiny):
    def train(seed: int) -> str:
        # Augmentation on, so its generator is covered by the determinism too.
        model = train_classifier(fresh_cnn(), tiny, torch.arange(0, 200, 2), tiny.train_labels, epochs=1,
                                 batch_size=32, lr=1e-3, weight_decay=1e-4, augment=True, seed=seed,
                                 device="cpu")
        return digest(model)

    assert train(seed=3) == train(seed=3)
    assert train(seed=3) != train(seed=4)


def test_only_the_given_indices_are_trained_on(tiny):
    # A model that never sees class 0 cannot predict it: Retrain's defining property.
    keep = torch.nonzero(tiny.train_labels != 0).flatten()
    model = train_classifier(fresh_cnn(), tiny, keep, tiny.train_labels, epochs=2, batch_size=16, lr=1e-3,
                             weight_decay=1e-4, augment=False, seed=0, device="cpu")
    with torch.no_grad():
        predictions = model(tiny.normalize(tiny.test_images)).argmax(1)
    assert (predictions == 0).sum() == 0
    assert (predictions == tiny.test_labels)[tiny.test_labels != 0].float().mean() >= 0.9


def test_a_training_reference_prints_its_progress_on_stderr_only(tiny, monkeypatch, capsys):
    monkeypatch.setattr(reference, "PROGRESS_EVERY_S", 0.0)   # a line at every batch instead of every 5 s
    train_classifier(fresh_cnn(), tiny, torch.arange(64), tiny.train_labels, epochs=2, batch_size=16, lr=1e-3,
                     weight_decay=0.0, augment=False, seed=0, device="cpu", label="f_D")
    printed = capsys.readouterr()
    lines = printed.err.splitlines()
    assert printed.out == "" and len(lines) == 9
    assert lines[0].startswith("f_D: epoch 1/2, batch 1/4, ") and lines[7].startswith("f_D: epoch 2/2, batch 4/4, ")
    assert lines[8].startswith("f_D: trained, 2 epochs in ") and lines[8].endswith(" s on cpu")


# ---- the cache ------------------------------------------------------------------------------------


def test_second_call_loads_the_same_weights_without_training(tiny, tmp_path, count_trainings):
    split = make_split(CFG, tiny)
    first = reference_models(CFG, tiny, split, device="cpu", cache_dir=tmp_path)
    assert len(count_trainings) == 2   # f_D and Retrain
    second = reference_models(CFG, tiny, split, device="cpu", cache_dir=tmp_path)
    assert len(count_trainings) == 2

    assert first.original_path == second.original_path != first.retrain_path
    assert first.original_path.parent == tmp_path / "references"
    assert digest(first.original) == digest(second.original)
    assert digest(first.retrain) == digest(second.retrain) != digest(first.original)
    for model in (second.original, second.retrain):
        assert not model.training and not any(p.requires_grad for p in model.parameters())

    record = json.loads(record_path(first.retrain_path).read_text())
    assert record["inputs"]["role"] == "retrain" and record["inputs"]["model"] == "cnn_small"
    assert record["inputs"]["data"] == tiny.fingerprint and record["train_seconds"] > 0
    # The provenance hash is of the tensors: the same in the record, on References and over the loaded model.
    assert record["sha256"] == first.retrain_sha256 == second.retrain_sha256 == state_sha256(second.retrain.state_dict())
    assert first.original_sha256 != first.retrain_sha256
    assert accuracy(second.original, tiny) >= 0.9


def test_f_d_is_shared_across_class_tasks_while_retrain_is_not(tiny, tmp_path, count_trainings):
    forget_0 = reference_models(CFG, tiny, make_split(CFG, tiny), device="cpu", cache_dir=tmp_path)
    cfg_3 = CFG.replace(forget_class=3)
    forget_3 = reference_models(cfg_3, tiny, make_split(cfg_3, tiny), device="cpu", cache_dir=tmp_path)
    assert len(count_trainings) == 3
    assert forget_0.original_path == forget_3.original_path
    assert forget_0.retrain_path != forget_3.retrain_path


def test_key_follows_the_labels_and_the_recipe(tiny, tmp_path, count_trainings):
    base = reference_models(CFG, tiny, make_split(CFG, tiny), device="cpu", cache_dir=tmp_path)
    # The noisy task trains f_D on corrupted labels: a different f_D, not the clean one.
    noisy_cfg = CFG.replace(task="noisy")
    noisy = reference_models(noisy_cfg, tiny, make_split(noisy_cfg, tiny), device="cpu", cache_dir=tmp_path)
    assert noisy.original_path != base.original_path
    slower = CFG.replace(ref_lr=5e-4)
    assert (reference_models(slower, tiny, make_split(slower, tiny), device="cpu", cache_dir=tmp_path)
            .original_path != base.original_path)
    assert len(count_trainings) == 6


def fetch_in_another_process(cache_dir: str, log: str, start: multiprocessing.synchronize.Barrier,
                             results: multiprocessing.Queue) -> None:
    """Child of the concurrency test: logs each training to `log`, reports the weights' digests."""
    torch.set_num_threads(1)
    real = reference.train_classifier

    def logged(*args, **kwargs):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return real(*args, **kwargs)

    reference.train_classifier = logged
    data = load_data(CFG)
    split = make_split(CFG, data)
    start.wait(timeout=120)
    refs = reference_models(CFG, data, split, device="cpu", cache_dir=cache_dir)
    results.put((digest(refs.original), digest(refs.retrain)))


def test_two_processes_asking_at_once_train_each_entry_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    log = tmp_path / "trainings.log"
    workers = [ctx.Process(target=fetch_in_another_process, args=(str(tmp_path), str(log), start, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    assert len(log.read_text().split()) == 2   # f_D once and Retrain once, not once per process
    assert got[0] == got[1]
    assert not list(Path(tmp_path, "references").glob("*.tmp"))


# ---- the references' metrics ----------------------------------------------------------------------


def bits(metrics: dict[str, float]) -> dict[str, str]:
    """Each metric's exact bits (float.hex: NaN equals NaN, -0.0 differs from 0.0)."""
    assert all(type(v) is float for v in metrics.values())
    return {k: v.hex() for k, v in metrics.items()}


def fresh_evaluation(prepared: Prepared) -> tuple[dict[str, float], dict[str, float]]:
    """(Retrain's, f_D's) metrics evaluated now, in prepare()'s order, on a copy of `prepared`."""
    now = Prepared(prepared.cfg, prepared.device, prepared.data, prepared.split, prepared.references,
                   prepared.split_path)
    now.retrain_metrics = now.evaluate(now.references.retrain)
    return now.retrain_metrics, now.evaluate(now.references.original)


def metrics_records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "metrics").glob("*.json"))]


def test_a_second_prepare_reads_the_references_metrics_bit_for_bit(tmp_path, count_evaluations, monkeypatch):
    first = prepare(CFG, device="cpu", cache_dir=tmp_path)
    assert len(count_evaluations) == 2
    retrain, original = fresh_evaluation(first)
    assert bits(first.retrain_metrics) == bits(retrain) and bits(first.original_metrics) == bits(original)
    assert first.retrain_metrics["avg_gap"] == 0.0 < first.original_metrics["avg_gap"]

    def evaluate(self, model):
        raise AssertionError("prepare() evaluated a reference although its metrics are stored")

    monkeypatch.setattr(Prepared, "evaluate", evaluate)
    second = prepare(CFG, device="cpu", cache_dir=tmp_path)
    assert bits(second.retrain_metrics) == bits(retrain) and bits(second.original_metrics) == bits(original)
    assert list(second.retrain_metrics) == list(retrain)   # the same columns, in the same order
    [record] = metrics_records(tmp_path / "references")
    assert record["inputs"] == reference_metrics_inputs(second) and record["device"] == "cpu"
    assert record["inputs"]["retrain_sha256"] == second.references.retrain_sha256


@pytest.mark.parametrize("change", [{"mia_samples": 50}, {"eval_seed": 1}, {"attack_draws": 2}])
def test_other_evaluation_settings_evaluate_again_and_keep_the_old_record(tmp_path, count_evaluations, change):
    base = prepare(CFG, device="cpu", cache_dir=tmp_path)
    other = prepare(CFG.replace(**change), device="cpu", cache_dir=tmp_path)
    assert len(count_evaluations) == 4   # a miss: the references evaluated again (their weights were a hit)
    assert other.references.retrain_sha256 == base.references.retrain_sha256
    assert len(metrics_records(tmp_path / "references")) == 2
    again = prepare(CFG, device="cpu", cache_dir=tmp_path)
    assert len(count_evaluations) == 4   # the old record is still there
    assert bits(again.retrain_metrics) == bits(base.retrain_metrics)
    retrain, original = fresh_evaluation(other)
    assert bits(other.retrain_metrics) == bits(retrain) and bits(other.original_metrics) == bits(original)


def test_another_run_seed_reads_the_same_reference_record(tmp_path, count_evaluations):
    # The attackers draw from the evaluation seed: a run of another seed is judged by the same numbers.
    base = prepare(CFG, device="cpu", cache_dir=tmp_path)
    other = prepare(CFG.replace(seed=1), device="cpu", cache_dir=tmp_path)
    assert len(count_evaluations) == 2 and len(metrics_records(tmp_path / "references")) == 1
    assert bits(other.retrain_metrics) == bits(base.retrain_metrics)


def test_two_nodes_sharing_a_store_evaluate_the_references_once(tmp_path, count_evaluations):
    shared = str(tmp_path / "shared")
    first = prepare(CFG, device="cpu", cache_dir=tmp_path / "cache0",
                    store=ReferenceStore(tmp_path / "node0", shared=shared))
    second = prepare(CFG, device="cpu", cache_dir=tmp_path / "cache1",
                     store=ReferenceStore(tmp_path / "node1", shared=shared))
    assert len(count_evaluations) == 2
    assert bits(second.retrain_metrics) == bits(first.retrain_metrics)
    assert bits(second.original_metrics) == bits(first.original_metrics)
    [record] = metrics_records(tmp_path / "shared")
    assert metrics_records(tmp_path / "node1")[0] == {**record, "origin": DOWNLOADED, "source": shared}


def test_a_record_of_other_reference_weights_is_never_used(tiny, tmp_path, count_evaluations, monkeypatch):
    # Node 1 trained and evaluated its own references before the cluster shared a store (another
    # shuffle seed stands in for a GPU's non-reproducible run of the same recipe).
    real = reference.train_classifier
    with monkeypatch.context() as patch:
        patch.setattr(reference, "train_classifier", lambda *a, **kw: real(*a, **{**kw, "seed": kw["seed"] + 1}))
        own = prepare(CFG, device="cpu", cache_dir=tmp_path / "cache1", store=ReferenceStore(tmp_path / "node1"))
    # Node 0 put the cluster's references in the shared store; nobody has evaluated them yet.
    shared = str(tmp_path / "shared")
    reference_models(CFG, tiny, make_split(CFG, tiny), device="cpu",
                     store=ReferenceStore(tmp_path / "node0", shared=shared))

    used = prepare(CFG, device="cpu", cache_dir=tmp_path / "cache1",
                   store=ReferenceStore(tmp_path / "node1", shared=shared))
    assert used.references.retrain_sha256 != own.references.retrain_sha256
    assert len(count_evaluations) == 4   # node 1's record judged other weights: evaluated again, not uploaded
    retrain, original = fresh_evaluation(used)
    assert bits(used.retrain_metrics) == bits(retrain) and bits(used.original_metrics) == bits(original)
    [record] = metrics_records(tmp_path / "shared")
    assert record["inputs"]["retrain_sha256"] == used.references.retrain_sha256
    assert record["key"] == entry_key(reference_metrics_inputs(used)) != entry_key(reference_metrics_inputs(own))
