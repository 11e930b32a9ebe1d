"""Evaluation the sweep's way: accuracies every epoch, the CPU attackers only where asked and in the
background, and the very numbers of the full evaluation wherever they are computed."""
from __future__ import annotations

import threading

import pytest
import torch

from mixunlearn.config import UnlearnConfig
from mixunlearn.metrics import ATTACK_METRICS
from mixunlearn.run import CurveBudget, epochs, evaluated_epochs, prepare
from mixunlearn.methods import MixUnlearn

CFG = UnlearnConfig(dataset="tiny", model="cnn_small", ref_epochs=2, epochs=5, batch_size=16, mia_samples=200)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    torch.set_num_threads(1)
    return prepare(CFG, device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))


def loop_of(prepared):
    return MixUnlearn(CFG, prepared.data, prepared.split, original=prepared.references.original, device="cpu")


def timeless(metrics):
    return {k: v for k, v in metrics.items() if "seconds" not in k}


@pytest.fixture(scope="module")
def full(prepared):
    """The old way: every metric after every epoch, in the foreground."""
    return [timeless(m) for m in epochs(prepared, loop_of(prepared))]


def test_deferred_attackers_give_the_full_evaluation_at_their_epochs_and_the_last(prepared, full):
    deferred = list(evaluated_epochs(prepared, loop_of(prepared), attack_epochs=(2, 3), background=True))
    assert [int(e.metrics["epoch"]) for e in deferred] == [1, 2, 3, 4, 5]
    for epoch, everything in zip(deferred, full):
        number = int(everything["epoch"])
        if number in (2, 3, 5):
            assert timeless(epoch.metrics) == everything, number   # bit for bit, the attackers included
        else:
            assert not set(ATTACK_METRICS) & set(epoch.metrics)
            assert timeless(epoch.metrics) == {k: v for k, v in everything.items() if k not in ATTACK_METRICS}
    assert deferred[-1].metrics == {**deferred[-1].metrics, **full[-1]}


def test_a_deferred_epoch_carries_its_own_state_for_the_checkpoint(prepared):
    deferred = {int(e.metrics["epoch"]): e for e in
                evaluated_epochs(prepared, loop_of(prepared), attack_epochs=(2,), background=True)}
    assert deferred[2].state is not None and deferred[2].state["epoch"] == 2
    assert deferred[1].state is None and deferred[5].state is None   # the loop's current state is theirs
    two_epochs = loop_of(prepared)
    two_epochs.train_epoch()
    two_epochs.train_epoch()
    for name, weights in two_epochs.unlearner.state_dict().items():
        assert torch.equal(deferred[2].state["unlearner"][name], weights), name

    resumed = loop_of(prepared)
    resumed.load_state_dict(deferred[2].state)
    rest = [timeless(m) for m in epochs(prepared, resumed)]
    straight = [timeless(m) for m in epochs(prepared, loop_of(prepared))]
    assert rest == straight[2:]   # resuming from the deferred epoch's checkpoint replays the run


def test_training_goes_on_while_slow_attackers_run_and_epochs_still_come_in_order(prepared, full, monkeypatch):
    loop = loop_of(prepared)
    trained_to_4 = threading.Event()
    train_epoch = loop.train_epoch

    def train_and_tell() -> float:
        seconds = train_epoch()
        if loop.epoch >= 4:
            trained_to_4.set()
        return seconds

    attack = prepared.attack
    outlasted = []

    def slow_attack(outputs, metrics):
        # Epoch 2's attackers finish only once epoch 4 has trained: a loop that waited for them would
        # never get there, and this wait would time out.
        outlasted.append(trained_to_4.wait(timeout=60))
        return attack(outputs, metrics)

    monkeypatch.setattr(loop, "train_epoch", train_and_tell)
    monkeypatch.setattr(prepared, "attack", slow_attack)
    handed = [(epoch, loop.epoch) for epoch in
              evaluated_epochs(prepared, loop, attack_epochs=(2,), background=True)]
    assert all(outlasted)
    assert [int(epoch.metrics["epoch"]) for epoch, _ in handed] == [1, 2, 3, 4, 5]
    trained_when_handed = {int(epoch.metrics["epoch"]): trained for epoch, trained in handed}
    assert trained_when_handed[2] >= 4 and trained_when_handed[3] >= 4   # epoch 3 waited behind epoch 2
    by_epoch = {int(epoch.metrics["epoch"]): timeless(epoch.metrics) for epoch, _ in handed}
    assert by_epoch[2] == full[1] and by_epoch[5] == full[4]   # the full evaluation's numbers, bit for bit
    assert handed[1][0].state["epoch"] == 2   # its checkpoint is epoch 2's, though the loop moved on


ACCURACIES = ("train_r", "train_f", "test", "ua", "ra", "ta")


def reporting_epochs_of(loop, seconds: float):
    """The loop, its train_epoch claiming `seconds` per epoch (the curve budget's measure of training)."""
    train_epoch = loop.train_epoch

    def claimed() -> float:
        train_epoch()
        return seconds
    loop.train_epoch = claimed
    return loop


def test_a_zero_curve_budget_evaluates_the_attack_epochs_and_the_last_only(prepared, full):
    handed = [timeless(e.metrics) for e in
              evaluated_epochs(prepared, loop_of(prepared), attack_epochs=(2,), curve_budget=0.0)]
    assert [int(m["epoch"]) for m in handed] == [1, 2, 3, 4, 5]
    for metrics, everything in zip(handed, full):
        if int(metrics["epoch"]) in (2, 5):
            assert metrics == everything   # the whole evaluation, bit for bit
        else:   # the training's own numbers only: no forward pass over the sample sets
            assert not set(ACCURACIES) & set(metrics)
            assert {"epoch", "unlearn_loss"} <= set(metrics)   # the loop's own numbers, every epoch


def test_epochs_long_enough_for_the_budget_get_their_accuracies(prepared, full):
    # A pass over the tiny set takes well under a second; with 1000-second epochs 5% is 50 s each.
    loop = reporting_epochs_of(loop_of(prepared), 1000.0)
    handed = [timeless(e.metrics) for e in evaluated_epochs(prepared, loop, attack_epochs=(2,), curve_budget=0.05)]
    for metrics, everything in zip(handed, full):
        everything = {k: v for k, v in everything.items() if "seconds" not in k}
        if int(metrics["epoch"]) in (2, 5):
            assert metrics == everything
        else:
            assert metrics == {k: v for k, v in everything.items() if k not in ATTACK_METRICS}


def test_the_curve_budget_spends_at_most_its_share_of_training_time():
    budget = CurveBudget(0.25)
    taken = []
    for epoch in range(1, 13):
        budget.trained(1.0)                 # 1-second epochs; a pass takes 0.5 s
        if epoch % 4 == 0:
            budget.timed(0.5, curve=False)  # an attack epoch: its pass is measured, not charged
        elif budget.allows_one():
            budget.timed(0.5, curve=True)
            taken.append(epoch)
    assert budget.spent_s <= 0.25 * budget.training_s
    # The first pass is taken to time it; after it, one whenever 0.25 s per trained second has paid for it.
    assert taken == [1, 5, 6, 9, 10]


def test_the_evaluate_of_a_model_is_the_sum_of_its_two_parts(prepared):
    model = prepared.references.original
    outputs = prepared.outputs(model)
    assert prepared.attack(outputs, prepared.accuracies(outputs)) == prepared.evaluate(model)
    assert prepared.evaluate(model) == prepared.original_metrics
