"""What is particular to one method: SalUn's mask, SCRUB's max steps, the adversarial and shadow labels,
the incompetent teacher, CF-k / EU-k's frozen and fresh stages, LAF+R's head stage, GA's divergence."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from method_helpers import REAL, build

from mixunlearn.methods import METHODS, Diverged
from mixunlearn.methods.common import last_linear, stages
from mixunlearn.metrics import accuracy, predict_probs

AWARE = REAL.replace(targets="aware")


def test_salun_mask_keeps_exactly_the_top_fraction_of_the_gradient(real):
    cls = METHODS["salun"]
    hyper = dataclasses.replace(cls.default_hyper(AWARE), mask_ratio=0.3, epochs=1)
    loop = build(real, cls, AWARE, hyper=hyper)
    # The saliency, computed here from its definition: |sum over D_f batches of grad(-CE)|, f_D in eval mode.
    net = copy.deepcopy(real.references.original).requires_grad_(True).eval()
    forget = real.split.forget_idx
    for idx in forget.split(hyper.batch_size):
        x = real.data.normalize(real.data.train_images[idx])
        (-F.cross_entropy(net(x), real.split.train_labels[idx])).backward()
    grads = {k: p.grad.abs() for k, p in net.named_parameters()}
    kept = torch.cat([grads[k][loop.mask[k]] for k in grads])
    dropped = torch.cat([grads[k][~loop.mask[k]] for k in grads])
    total = sum(g.numel() for g in grads.values())
    assert len(kept) == round(0.3 * total)
    assert kept.min() >= dropped.max()

    loop.train_epoch()   # the default "reset" choice: masked-out weights never move
    for (key, p), p0 in zip(loop.model.named_parameters(), real.references.original.parameters()):
        assert torch.equal(p[~loop.mask[key]], p0[~loop.mask[key]]), key
        assert not torch.equal(p[loop.mask[key]], p0[loop.mask[key]]), key


def test_scrub_takes_max_steps_only_in_its_first_msteps_epochs(real):
    cls = METHODS["scrub"]
    hyper = dataclasses.replace(cls.default_hyper(REAL), epochs=4, msteps=2)
    loop = build(real, cls, hyper=hyper)
    per_epoch = []
    while loop.epoch < loop.epochs:
        before = loop.max_steps
        loop.train_epoch()
        per_epoch.append(loop.max_steps - before)
    batches = -(-len(real.split.forget_idx) // hyper.forget_batch_size)
    assert per_epoch == [batches, batches, 0, 0]


def test_boundary_shrink_relabels_every_forget_sample_to_a_wrong_class(real):
    loop = build(real, METHODS["boundary_shrink"], AWARE)
    forget = real.split.forget_idx
    adversarial, true = loop.adversarial_labels[forget], real.split.train_labels[forget]
    assert (adversarial != true).all()
    assert len(adversarial.unique()) > 1, "the nearest wrong class depends on the sample"


def test_bad_teachers_incompetent_teacher_is_untrained_and_stays_so(real):
    loop = build(real, METHODS["bad_teacher"])
    before = copy.deepcopy(loop.incompetent.state_dict())
    probs = predict_probs(loop.incompetent, real.data, real.data.test_images)
    assert accuracy(probs.numpy(), real.data.test_labels.numpy()) < 25.0   # chance is 10%
    assert accuracy(predict_probs(real.references.original, real.data, real.data.test_images).numpy(),
                    real.data.test_labels.numpy()) > 70.0
    loop.train_epoch()
    for key, value in loop.incompetent.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_boundary_expanding_trains_a_shadow_class_and_returns_f_ds_architecture(real):
    loop = build(real, METHODS["boundary_expanding"])
    while loop.epoch < loop.epochs:
        loop.train_epoch()
    forget = real.split.forget_idx
    with torch.no_grad():
        widened = loop.widened_logits(forget)
    assert widened.shape[1] == real.data.num_classes + 1
    assert (widened.argmax(1) == real.data.num_classes).float().mean() > 0.9, "D_f goes to the shadow class"
    assert type(loop.model) is type(real.references.original)
    assert loop.model(real.data.normalize(real.data.train_images[:4])).shape == (4, real.data.num_classes)


@pytest.mark.parametrize("name", ["cf_k", "eu_k"])
def test_cf_k_and_eu_k_train_only_the_last_k_stages(real, name):
    loop = build(real, METHODS[name])
    k = loop.hyper.k
    fresh = [list(s.parameters()) for s in stages(loop.model)]
    reference = [list(s.parameters()) for s in stages(real.references.original)]
    same_at_start = [all(torch.equal(a, b) for a, b in zip(f, r)) for f, r in zip(fresh, reference)]
    assert same_at_start == [True] * (len(fresh) - k - 1) + [name == "cf_k"] * (k + 1)
    loop.train_epoch()
    trained = [list(s.parameters()) for s in stages(loop.model)]
    unchanged = [all(torch.equal(a, b) for a, b in zip(t, r)) for t, r in zip(trained, reference)]
    assert unchanged == [True] * (len(trained) - k - 1) + [False] * (k + 1)


def test_laf_r_head_stage_moves_only_the_last_linear_layer(real):
    cls = METHODS["laf_r"]
    hyper = dataclasses.replace(cls.default_hyper(REAL), epochs=1, head_epochs=1)
    loop = build(real, cls, hyper=hyper)
    loop.train_epoch()
    after_laf = copy.deepcopy(loop.model.state_dict())
    loop.train_epoch()
    head = {f"{name}.{p}" for name, m in loop.model.named_modules() if m is last_linear(loop.model)
            for p in ("weight", "bias")}
    for key, value in loop.model.state_dict().items():
        assert torch.equal(value, after_laf[key]) == (key not in head), key
    assert loop.epoch == loop.epochs == 2


def test_ga_with_a_huge_learning_rate_raises_diverged_naming_the_epoch(real):
    cls = METHODS["ga"]
    loop = build(real, cls, hyper=dataclasses.replace(cls.default_hyper(REAL), lr=1e6, epochs=10))
    with pytest.raises(Diverged) as caught:
        while loop.epoch < loop.epochs:
            loop.train_epoch()
    assert caught.value.epoch == loop.epoch + 1 and caught.value.method == "ga"
    assert f"epoch {caught.value.epoch}" in str(caught.value)
