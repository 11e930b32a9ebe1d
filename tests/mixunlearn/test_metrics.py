"""Evaluation metrics on cases whose answers can be counted by hand, and on a real tiny run."""
from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from mixunlearn import metrics
from mixunlearn.config import UnlearnConfig
from mixunlearn.data import ImageData, load_data
from mixunlearn.metrics import ATTACKER, accuracy, asr, avg_gap, evaluate, mia_efficacy, predict_probs
from mixunlearn.models import build_model
from mixunlearn.reference import train_classifier
from mixunlearn.tasks import ForgetSplit, make_split


@pytest.fixture(scope="module", autouse=True)
def one_thread_each() -> Iterator[None]:
    """The suite shares two cores with other jobs, where OpenMP pools (torch, the attackers) that
    spin-wait for each other run several times slower than a single thread."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(torch_threads)


# ---- low-level parts on constructed arrays ---------------------------------------------------

def probs_with_top(top: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Softmax-like rows whose largest probability is `top`, at a random class; the rest shared evenly."""
    probs = np.repeat(((1 - top) / (num_classes - 1))[:, None], num_classes, axis=1)
    probs[np.arange(len(top)), rng.integers(num_classes, size=len(top))] = top
    return probs


def test_accuracy_counts_argmax_hits_in_percent() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert accuracy(probs, np.array([0, 1, 1, 0])) == 50.0
    assert np.isnan(accuracy(probs[:0], np.array([], dtype=np.int64)))


def test_avg_gap_is_zero_against_itself_and_the_mean_absolute_difference_otherwise() -> None:
    ours = {"ua": 10.0, "ra": 90.0, "ta": 80.0, "mia_efficacy": 20.0, "asr": 55.0}
    assert avg_gap(ours, ours) == 0.0
    retrain = {"ua": 14.0, "ra": 88.0, "ta": 84.0, "mia_efficacy": 10.0, "asr": 99.0}
    assert avg_gap(ours, retrain) == pytest.approx((4 + 2 + 4 + 10) / 4)


def test_mia_efficacy_calls_non_member_looking_forget_sets_forgotten() -> None:
    rng = np.random.default_rng(0)
    members = rng.uniform(0.9, 1.0, 2000)       # trained-on samples: confident
    nonmembers = rng.uniform(0.2, 0.6, 2000)    # unseen samples: unsure
    like_nonmembers = rng.uniform(0.2, 0.6, 300)
    like_members = rng.uniform(0.9, 1.0, 300)
    assert mia_efficacy(members, nonmembers, like_nonmembers, seed=0) > 97
    assert mia_efficacy(members, nonmembers, like_members, seed=0) < 3
    # The cap bounds the SVM's training set and the draw is reproducible.
    assert mia_efficacy(members, nonmembers, like_nonmembers, seed=1, max_samples=100) == \
        mia_efficacy(members, nonmembers, like_nonmembers, seed=1, max_samples=100)


def test_asr_is_chance_when_members_and_non_members_look_alike() -> None:
    rng = np.random.default_rng(0)
    same = rng.dirichlet(np.ones(10), size=2000).astype(np.float32)
    rate = asr(same[:500], same[500:1000], same[1000:1500], same[1500:2000], seed=0)
    assert 42 <= rate <= 58


def test_asr_is_perfect_when_members_and_non_members_are_separable() -> None:
    rng = np.random.default_rng(0)
    confident = probs_with_top(rng.uniform(0.9, 1.0, 1000), 10, rng)
    unsure = probs_with_top(rng.uniform(0.3, 0.6, 1000), 10, rng)
    assert asr(confident[:500], unsure[:500], confident[500:], unsure[500:], seed=0) >= 99
    # Forget samples that look unseen fool the attacker completely.
    assert asr(confident[:500], unsure[:400], unsure[400:700], unsure[700:], seed=0) <= 55


def test_attacker_is_named() -> None:
    expected = "xgboost" if importlib.util.find_spec("xgboost") else "sklearn-hist-gradient-boosting"
    assert ATTACKER == expected
    assert type(metrics.make_attacker(0)).__name__ in ("XGBClassifier", "HistGradientBoostingClassifier")


# ---- evaluate() on a hand-built model ---------------------------------------------------------

class LookupModel(nn.Module):
    """Predicts a fixed class per sample: each 1x1 image holds its sample id as its one pixel value."""

    def __init__(self, predicted: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("logits", 5.0 * nn.functional.one_hot(predicted, num_classes).float())
        self.samples_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.samples_seen += len(x)
        ids = (x.flatten(1)[:, 0] * 255).round().long()   # normalize() with mean 0, std 1 is x / 255
        return self.logits[ids]


# Three classes, class 0 forgotten. Train ids 0-29 (10 per class, D_f = ids 0-9), test ids 30-44 (5 per class).
TRAIN_LABELS = torch.arange(3).repeat_interleave(10)
TEST_LABELS = torch.arange(3).repeat_interleave(5)
FORGET_IDX = torch.arange(10)
# The ids the hand-built model gets wrong: 7 of D_f, 4 of D_r, 4 of test class 0, 3 of test classes 1-2.
WRONG_IDS = [3, 4, 5, 6, 7, 8, 9] + [10, 11, 20, 21] + [31, 32, 33, 34] + [35, 36, 40]


def lookup_data() -> ImageData:
    labels = torch.cat([TRAIN_LABELS, TEST_LABELS])
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1)
    return ImageData(name="lookup", train_images=images[:30], train_labels=TRAIN_LABELS,
                     test_images=images[30:], test_labels=TEST_LABELS, num_classes=3,
                     mean=(0.0,), std=(1.0,), fingerprint="lookup", source="test_metrics.py")


def lookup_split(forget_classes: tuple[int, ...]) -> ForgetSplit:
    retain = torch.arange(10, 30)
    return ForgetSplit(task="class" if forget_classes else "data", forget_idx=FORGET_IDX, retain_idx=retain,
                       train_labels=TRAIN_LABELS, labelled=torch.ones(30, dtype=torch.bool),
                       forget_classes=forget_classes, fingerprint="lookup", spec={},
                       original_labels=TRAIN_LABELS)


def lookup_model(wrong_ids: list[int]) -> LookupModel:
    predicted = torch.cat([TRAIN_LABELS, TEST_LABELS])
    predicted[wrong_ids] = (predicted[wrong_ids] + 1) % 3
    return LookupModel(predicted, num_classes=3)


def test_accuracies_equal_hand_counts_on_a_class_level_split() -> None:
    result = evaluate(lookup_model(WRONG_IDS), lookup_data(), lookup_split((0,)), mia_samples=50)
    assert result["train_f"] == pytest.approx(30.0)          # 3 of 10
    assert result["train_r"] == pytest.approx(80.0)          # 16 of 20
    assert result["test"] == pytest.approx(100 * 8 / 15)
    assert result["test_f"] == pytest.approx(20.0)           # 1 of 5
    assert result["test_r"] == pytest.approx(70.0)           # 7 of 10
    assert result["ua"] == pytest.approx(70.0)
    assert result["ra"] == pytest.approx(80.0)
    assert result["ta"] == pytest.approx(70.0)               # class-level: TA is Test_r
    assert set(result) == {"train_r", "train_f", "test", "test_r", "test_f", "ua", "ra", "ta",
                           "mia_efficacy", "asr", "du_mia", "mia_efficacy_std", "asr_std", "du_mia_std"}
    assert all(0.0 <= value <= 100.0 for key, value in result.items() if not key.endswith("_std"))


def test_sample_level_splits_report_the_whole_test_set_only() -> None:
    result = evaluate(lookup_model(WRONG_IDS), lookup_data(), lookup_split(()), mia_samples=50)
    assert "test_r" not in result and "test_f" not in result
    assert result["ta"] == result["test"] == pytest.approx(100 * 8 / 15)


def test_unlearning_accuracy_is_0_for_a_perfect_and_100_for_an_always_wrong_classifier() -> None:
    data, split = lookup_data(), lookup_split((0,))
    assert evaluate(lookup_model([]), data, split, mia_samples=50)["ua"] == 0.0
    assert evaluate(lookup_model(list(range(45))), data, split, mia_samples=50)["ua"] == 100.0


def test_evaluate_runs_the_model_once_per_sample_and_leaves_its_mode_alone() -> None:
    model, data = lookup_model(WRONG_IDS), lookup_data()
    model.train()
    first = evaluate(model, data, lookup_split((0,)), batch_size=7, mia_samples=50, seed=3)
    assert model.samples_seen == 30 + 15
    assert model.training
    again = evaluate(model, data, lookup_split((0,)), batch_size=7, mia_samples=50, seed=3)
    assert {k: v for k, v in again.items() if not k.endswith("_std")} == {k: v for k, v in first.items()
                                                                           if not k.endswith("_std")}
    assert math.isnan(first["asr_std"]) and math.isnan(again["asr_std"])   # one draw: no spread to report
    assert avg_gap(first, first) == 0.0


def test_predict_probs_is_a_batched_softmax() -> None:
    model, data = lookup_model(WRONG_IDS), lookup_data()
    probs = predict_probs(model, data, data.test_images, batch_size=4)
    assert probs.dtype == torch.float32 and probs.shape == (15, 3)
    assert torch.allclose(probs.sum(dim=1), torch.ones(15))
    assert torch.equal(probs.argmax(dim=1), model.logits[30:].argmax(dim=1))


# ---- evaluate() on a real cnn_small trained on the built-in "tiny" set --------------------------

@pytest.fixture(scope="module")
def tiny_setup() -> tuple[ImageData, ForgetSplit, nn.Module, nn.Module]:
    """f_D (trained on all of D) and Retrain (on D_r only) for forgetting class 0 of "tiny"."""
    cfg = UnlearnConfig(dataset="tiny", task="class", forget_class=0, model="cnn_small")
    data = load_data(cfg)
    split = make_split(cfg, data)

    def trained(indices: torch.Tensor) -> nn.Module:
        model = build_model("cnn_small", num_classes=data.num_classes, in_channels=data.in_channels,
                            image_size=data.image_size)
        torch.manual_seed(0)
        return train_classifier(model, data, indices, split.train_labels, epochs=2, batch_size=32, lr=1e-3,
                                weight_decay=0.0, augment=False, seed=0, device="cpu")

    return data, split, trained(torch.arange(len(data.train_labels))), trained(split.retain_idx)


def test_evaluate_separates_the_original_model_from_retrain(tiny_setup) -> None:
    data, split, original, retrain = tiny_setup
    of_original = evaluate(original, data, split)
    of_retrain = evaluate(retrain, data, split)

    direct = predict_probs(original, data, data.test_images).argmax(dim=1) == data.test_labels
    assert of_original["test"] == pytest.approx(100 * direct.float().mean().item())
    assert of_original["test"] > 80 and of_original["ua"] < 20 and of_original["test_f"] > 80
    # Retrain never saw class 0, so it never predicts it: D_f is fully "unlearned" and looks unseen.
    assert of_retrain["ua"] == 100.0 and of_retrain["test_f"] == 0.0 and of_retrain["test_r"] > 80
    assert of_retrain["mia_efficacy"] > 90
    assert avg_gap(of_retrain, of_retrain) == 0.0
    assert avg_gap(of_original, of_retrain) > 20
