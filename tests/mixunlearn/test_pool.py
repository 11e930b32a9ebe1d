"""The audit's pool as reference-store entries: its seed-ref_seed members are the very f_D and Retrain
every run is judged by, margins sit beside each model, and nothing is trained twice."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mixunlearn.config import UnlearnConfig
from mixunlearn.judge.margins import model_margins
from mixunlearn.judge.pool import ORIGINAL, RETRAIN, Job, Pool
from mixunlearn.run import prepare

CFG = UnlearnConfig(dataset="tiny", model="cnn_small", task="random", ref_epochs=1, ref_seed=1, method="ga",
                    epochs=1, mia_samples=100, attack_draws=1)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("pool-cache")
    prepared = prepare(CFG, device="cpu", cache_dir=cache)
    from mixunlearn.reference_store import ReferenceStore
    return prepared, Pool(CFG, prepared.data, prepared.split, ReferenceStore(cache / "references"), models=3)


def test_the_pool_member_of_ref_seed_is_the_runs_reference(prepared):
    prepared, pool = prepared
    original, retrain = pool.run(Job(ORIGINAL, 1), device="cpu"), pool.run(Job(RETRAIN, 1), device="cpu")
    assert not original.trained and not retrain.trained            # prepare() trained them already
    assert original.sha256 == prepared.references.original_sha256
    assert retrain.sha256 == prepared.references.retrain_sha256
    phi = pool.margins([Job(ORIGINAL, 1)])[0]
    assert phi.dtype == np.float32 and phi.shape == (len(prepared.split.train_labels) + len(prepared.data.test_labels),)
    np.testing.assert_array_equal(phi, model_margins(prepared.references.original, prepared.data, prepared.split))


def test_other_seeds_train_once_and_an_unlearned_model_is_keyed_by_its_original(prepared):
    prepared, pool = prepared
    first = pool.run(Job(ORIGINAL, 0), device="cpu")
    assert first.trained and first.sha256 != prepared.references.original_sha256
    assert not pool.run(Job(ORIGINAL, 0), device="cpu").trained
    [job] = [j for j in pool.unlearned(CFG) if j.seed == 0]
    made = pool.run(job, device="cpu")
    assert made.trained and not pool.run(job, device="cpu").trained
    # Fields that do not touch the weights share the entry; another seed of the method does not matter (each
    # model takes its pool seed), another hyperparameter does.
    assert pool.inputs(pool.unlearned(CFG.replace(eval_seed=5, attack_draws=2, seed=9))[0]) == pool.inputs(job)
    assert pool.inputs(pool.unlearned(CFG.replace(lr=CFG.hyper.lr * 2))[0]) != pool.inputs(job)
    assert pool.cached(job) is not None and pool.cached(pool.unlearned(CFG)[2]) is None
