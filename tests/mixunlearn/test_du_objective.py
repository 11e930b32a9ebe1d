"""Deep Unlearn's objective on hand-made softmax outputs: the four terms and their norm, counted longhand."""
from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from mixunlearn.data import ImageData
from mixunlearn.metrics import (DU_METRICS, Outputs, accuracies, attacks, cross_entropy, du_mia, du_mia_term,
                                du_objective)
from mixunlearn.tasks import ForgetSplit
from search_spaces import load_space


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Two cores shared with other jobs: single-threaded attackers run fastest (see test_metrics.py)."""
    with threadpool_limits(limits=1):
        yield


# Two classes. Train: 40 forget samples (class 0), 60 retain (class 1); test: 50 of each class.
N_FORGET, N_RETAIN, N_TEST = 40, 60, 100
TRAIN_LABELS = torch.tensor([0] * N_FORGET + [1] * N_RETAIN)
TEST_LABELS = torch.tensor([0, 1] * (N_TEST // 2))


def data() -> ImageData:
    images = torch.zeros(N_FORGET + N_RETAIN + N_TEST, 1, 1, 1, dtype=torch.uint8)   # never read: Outputs given
    return ImageData(name="hand", train_images=images[:N_FORGET + N_RETAIN], train_labels=TRAIN_LABELS,
                     test_images=images[N_FORGET + N_RETAIN:], test_labels=TEST_LABELS, num_classes=2,
                     mean=(0.0,), std=(1.0,), fingerprint="hand", source="test_du_objective.py")


def split() -> ForgetSplit:
    return ForgetSplit(task="data", forget_idx=torch.arange(N_FORGET), retain_idx=torch.arange(N_FORGET, 100),
                       train_labels=TRAIN_LABELS, labelled=torch.ones(100, dtype=torch.bool), forget_classes=(),
                       fingerprint="hand", spec={}, original_labels=TRAIN_LABELS)


def two_class(p_true: np.ndarray, labels: torch.Tensor) -> np.ndarray:
    """Softmax rows giving each sample's own label the probability p_true."""
    probs = np.empty((len(labels), 2), dtype=np.float32)
    own = labels.numpy()
    probs[np.arange(len(own)), own] = p_true
    probs[np.arange(len(own)), 1 - own] = 1.0 - p_true
    return probs


def test_the_objective_on_hand_made_outputs_equals_a_longhand_count() -> None:
    # Forget set: 30 of 40 right, confidently (p = 0.99 on the right ones, 0.3 on the wrong ones);
    # retain: all right at p = 0.9; test: 80 of 100 right at p = 0.6, the rest p = 0.2.
    forget_p = np.array([0.99] * 30 + [0.3] * 10)
    test_p = np.array([0.6] * 80 + [0.2] * 20)
    outputs = Outputs(np.concatenate([two_class(forget_p, TRAIN_LABELS[:N_FORGET]),
                                      two_class(np.full(N_RETAIN, 0.9), TRAIN_LABELS[N_FORGET:])]),
                      two_class(test_p, TEST_LABELS))
    metrics = {**accuracies(outputs, data(), split()), **attacks(outputs, data(), split(), seed=0)}
    assert (metrics["train_r"], metrics["train_f"], metrics["test"]) == (100.0, 75.0, 80.0)
    retrain = {"train_r": 97.0, "train_f": 81.0, "test": 83.0}
    objective = du_objective(metrics, retrain)

    # Longhand: the gaps are |Δ| / 3 in percentage points.
    assert objective["du_retain_gap"] == pytest.approx(3.0 / 3)
    assert objective["du_forget_gap"] == pytest.approx(6.0 / 3)
    assert objective["du_test_gap"] == pytest.approx(3.0 / 3)
    # The MIA longhand: the losses from the p's above; the balanced draw (40 a side: all of D_f, 40 test
    # samples by Generator(0)); 10 stratified folds of 8; a logistic regression fitted on each fold's rest.
    losses_forget = -np.log(forget_p)
    losses_test = -np.log(test_p)
    rng = np.random.default_rng(0)
    forget_draw = losses_forget[rng.choice(N_FORGET, N_FORGET, replace=False)]
    test_draw = losses_test[rng.choice(N_TEST, N_FORGET, replace=False)]
    x = np.concatenate([forget_draw, test_draw]).reshape(-1, 1)
    y = np.array([1] * N_FORGET + [0] * N_FORGET)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    right = sum(int(np.sum(LogisticRegression().fit(x[fit], y[fit]).predict(x[held]) == y[held]))
                for fit, held in StratifiedKFold(10, shuffle=True, random_state=0).split(x, y))
    mia = right / (2 * N_FORGET)                                   # equal folds: the mean of their accuracies
    assert 0.5 < mia < 1.0                                         # D_f's confident 0.99s give it away, partly
    assert metrics["du_mia"] == pytest.approx(100 * (1 - (1 - abs(mia - 0.5) / 0.5)))
    assert du_mia(losses_forget, losses_test, 0) == pytest.approx(100 * mia)
    norm = math.sqrt(1.0 ** 2 + 2.0 ** 2 + 1.0 ** 2 + metrics["du_mia"] ** 2)
    assert objective["du_norm"] == pytest.approx(norm)
    assert set(DU_METRICS) <= set(objective)


def test_retrain_against_itself_has_no_gaps_and_its_norm_is_its_mia_term() -> None:
    objective = du_objective({"train_r": 90.0, "train_f": 10.0, "test": 70.0, "du_mia": 12.0}, {})
    assert objective == {"du_retain_gap": 0.0, "du_forget_gap": 0.0, "du_test_gap": 0.0, "du_mia": 12.0,
                         "du_norm": 12.0}


def test_forget_losses_like_the_test_losses_are_indiscernible() -> None:
    losses = np.random.default_rng(1).exponential(0.5, 2000)
    mia = du_mia(losses, losses.copy(), seed=0)
    assert abs(mia - 50.0) < 4.0
    assert du_mia_term(mia) < 8.0


def test_separable_forget_losses_are_found_out() -> None:
    rng = np.random.default_rng(2)
    mia = du_mia(rng.uniform(0.0, 0.05, 2000), rng.uniform(1.0, 3.0, 2000), seed=0)
    assert mia > 99.0 and du_mia_term(mia) > 98.0


def test_balanced_draw_is_capped_by_mia_samples_and_seeded() -> None:
    rng = np.random.default_rng(3)
    forget, test = rng.exponential(0.3, 500), rng.exponential(0.6, 3000)
    assert du_mia(forget, test, seed=4, max_samples=200) == du_mia(forget, test, seed=4, max_samples=200)
    assert math.isnan(du_mia(forget[:1], test, seed=0))


def test_the_added_cpu_cost_is_small_at_the_default_sizes() -> None:
    # Fashion-MNIST sizes: 6000 forget samples, 10000 test samples, 5000 a side (mia_samples' default).
    rng = np.random.default_rng(5)
    forget, test = rng.exponential(0.1, 6000), rng.exponential(0.4, 10_000)
    start = time.perf_counter()
    du_mia(forget, test, seed=0)
    assert time.perf_counter() - start < 5.0   # measured ~0.3 s on one core; the SVM of mia_efficacy costs more


def test_a_sweep_may_minimise_du_norm(tmp_path) -> None:
    space = tmp_path / "du.yaml"
    space.write_text("base: {dataset: fashion_mnist, model: cnn_small, epochs: 2}\n"
                     "search: {alpha: {low: 0.1, high: 4.0, log: true}}\n"
                     "objectives: [{metric: du_norm, mode: min}]\n")
    assert [tuple(o) for o in load_space(space).objectives] == [("du_norm", "min")]
    four = tmp_path / "du4.yaml"
    four.write_text(space.read_text().replace("[{metric: du_norm, mode: min}]", "[" + ", ".join(
        f"{{metric: {m}, mode: min}}" for m in DU_METRICS[:4]) + "]"))
    assert [o.metric for o in load_space(four).objectives] == list(DU_METRICS[:4])
