"""Every method, through the one contract: it forgets, it resumes exactly, an agnostic run reads no label.

One straight run per method with its default (Fashion-MNIST track) hyperparameters, label-aware as in
the sources, serves the first two checks and the aware half of the third: its states after epoch k and
after the last-but-one epoch are kept, so those checks cost a few epochs more, not a run more.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
from method_helpers import REAL, build, saved

from mixunlearn.methods import METHODS

AWARE = REAL.replace(targets="aware")

# Margins, in percentage points, from these measurements (f_D: Train_f 89.0, Test_r 80.9; Retrain:
# Train_f 0.0, Test_r 80.7), targets aware, CPU float32, 1 thread, torch 2.14.1, on a 2-core Intel Xeon
# VM shared with other jobs (load average 12-34), 1 run each; the rows marked with a reason re-measured after
# issue 17's source fixes (the same kind of VM, load ~18); Train_f / Test_r for seeds 0 (tested), 1, 2:
#   method              seed 0        seed 1        seed 2       epochs
#   mixunlearn           0 / 80.9      0 / 81.8      0 / 82.7      20   (quiet machine, METHOD.md's defaults)
#   retrain              0 / 80.7     (the reference recipe)        8
#   ft                   0 / 86.2      0 / 83.1      0 / 83.6       5
#   ga                   0 / 81.3      0 / 81.1      0 / 81.6       5
#   neggrad_plus         0 / 81.3      0 / 81.6      0 / 80.7       5
#   rl                   0 / 81.3      0 / 74.7      0 / 79.1       5
#   salun                0 / 82.0      0 / 75.6      0 / 78.7       5
#   l1_sparse            0 / 76.0      0 / 84.0      0 / 80.9       5
#   cf_k                 0 / 83.8      0 / 84.9      0 / 84.9       5   (DU's plain SGD, eval mode)
#   eu_k                 0 / 82.9      0 / 84.7      0 / 84.2      10   (DU's init and anchor)
#   scrub                0 / 82.0      0 / 82.4      0 / 67.1       5   (rewind: seed 2 returns epoch 2)
#   bad_teacher         46 / 81.1     44 / 81.8     45 / 81.1       5
#   boundary_shrink      4 / 80.2      2 / 80.0      7 / 80.9       5   (SU's plain arg-max)
#   boundary_expanding   0 / 78.2      0 / 79.1      0 / 78.7       5
#   laf                  5 / 78.9      1 / 78.7      5 / 80.0      20   (fc1's output, sampling, eval mode)
#   laf_r                0 / 76.9      0 / 78.7      0 / 79.1      22
# Bad Teacher forgets least (43 points); the largest Test_r loss at seed 0 is l1_sparse's (4.9 points).
# SCRUB's rewind (DU's selection) can return an early epoch whose retain accuracy has not recovered yet.
# Label-agnostic, the methods that learn D_r's labels (ft, cf_k, eu_k, scrub, l1_sparse) forget far less
# here: f_D's arg-max calls some retained images class 0 (its Train_r is 84%), and they learn it back.
TRAIN_F_DROP = 30.0   # Train_f falls at least this far below f_D's
TEST_R_LOSS = 8.0     # Test_r stays within this of f_D's

NAMES = sorted(METHODS)


class Straight:
    def __init__(self, loop, states, k, metrics):
        self.loop, self.states, self.k, self.metrics = loop, states, k, metrics   # states: epoch -> state


@pytest.fixture(scope="module")
def straight(real):
    runs: dict[str, Straight] = {}

    def get(name: str) -> Straight:
        if name not in runs:
            loop = build(real, METHODS[name], AWARE)
            k = max(1, loop.epochs // 2)
            states = {}
            while loop.epoch < loop.epochs:
                loop.train_epoch()
                if loop.epoch in (1, k, loop.epochs - 1):
                    states[loop.epoch] = saved(loop.state_dict())
            runs[name] = Straight(loop, states, k, real.evaluate(loop.model.eval()))
        return runs[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_default_run_forgets_the_class_and_keeps_the_rest(real, straight, name):
    before, after = real.original_metrics, straight(name).metrics
    print(f"{name}: Train_f {after['train_f']:.1f} (f_D {before['train_f']:.1f}), Test_r {after['test_r']:.1f} "
          f"(f_D {before['test_r']:.1f}), {straight(name).loop.epochs} epochs, {straight(name).loop.seconds:.1f} s")
    assert after["train_f"] <= before["train_f"] - TRAIN_F_DROP, (name, after)
    assert after["test_r"] >= before["test_r"] - TEST_R_LOSS, (name, after)


@pytest.mark.parametrize("name", NAMES)
def test_resume_from_epoch_k_replays_the_uninterrupted_run(real, straight, name):
    run = straight(name)
    resumed = build(real, METHODS[name], AWARE)
    resumed.load_state_dict(run.states[run.k])
    assert resumed.epoch == run.k
    while resumed.epoch < resumed.epochs:
        resumed.train_epoch()
    for (key, a), b in zip(resumed.model.state_dict().items(), run.loop.model.state_dict().values()):
        assert torch.equal(a, b), (name, key)
    assert resumed.state_dict()["rng"] == run.loop.state_dict()["rng"]


@pytest.mark.parametrize("name", [n for n in NAMES if n != "retrain"])
def test_agnostic_run_reads_no_label(real, straight, name):
    """Permuting the split's labels leaves an agnostic first epoch unchanged; an aware last epoch reads them.

    The first epoch covers labels read while a method is built (SalUn's mask, Boundary Shrink's
    adversarial labels); the last epoch, resumed from the straight run, covers later stages (LAF+R's head)."""
    generator = torch.Generator().manual_seed(1)
    labels = real.split.train_labels
    permuted = dataclasses.replace(real.split, train_labels=labels[torch.randperm(len(labels), generator=generator)])

    plain, shuffled = build(real, METHODS[name]), build(real, METHODS[name], split=permuted)
    plain.train_epoch()
    shuffled.train_epoch()
    reference = plain.model.state_dict()
    for key, value in shuffled.model.state_dict().items():
        assert torch.equal(value, reference[key]), (name, key)

    if METHODS[name].reads_labels:
        run = straight(name)
        aware = build(real, METHODS[name], AWARE, split=permuted)
        aware.load_state_dict(run.states[run.loop.epochs - 1])
        aware.train_epoch()
        # The whole state: a method may return an earlier epoch's weights (SCRUB's rewind), whose choice
        # (its forget errors) is where the labels then show.
        assert not same_state(saved(aware.state_dict()), saved(run.loop.state_dict())), \
            f"{name} says it reads labels, but an aware run on permuted labels matches the true-label one"


def same_state(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(same_state, a, b))
    return a == b


def test_retrain_row_is_the_cached_reference_bit_for_bit(real, straight):
    run = straight("retrain")
    assert run.loop.epochs == REAL.ref_epochs
    for key, value in real.references.retrain.state_dict().items():
        assert torch.equal(run.loop.model.state_dict()[key], value), key


def test_retrain_row_of_another_seed_is_that_seeds_oracle(real):
    """The Retrain row re-trains with the run's seed: seed 1 is the oracle pool's member of seed 1 (the same
    store entry's recipe), not the cached Retrain, so a benchmark's Retrain (re-run) row has a real spread."""
    from mixunlearn.reference import RETRAIN, reference_trainer

    cfg = REAL.replace(seed=1)
    loop = build(real, METHODS["retrain"], cfg)
    while loop.epoch < loop.epochs:
        loop.train_epoch()
    oracle = reference_trainer(cfg, real.data, real.split, RETRAIN, 1, real.device)()
    for key, value in loop.model.state_dict().items():
        assert torch.equal(value, oracle[key]), key
    assert any(not torch.equal(v, real.references.retrain.state_dict()[k]) for k, v in oracle.items())
