"""What is particular to one method: SalUn's mask, SCRUB's max steps and rewind, the adversarial and shadow
labels, the incompetent teacher, CF-k / EU-k's frozen and fresh stages and their anchor, LAF's sampling
encoder and embedding, LAF+R's head stage, GA's divergence."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from method_helpers import REAL, build, saved

from mixunlearn.methods import METHODS, Diverged
from mixunlearn.methods.common import stages
from mixunlearn.methods.laf import head_linears, reconstruction_error
from mixunlearn.metrics import accuracy, predict_probs
from mixunlearn.run import epochs, prepare

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
    assert len(kept) == int(total * 0.3)
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


def fgsm_labels(real, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SU's FGSM_perturb and arg-max, written here from boundary_sh.py: (f_D's arg-max at x_adv, y_f)."""
    net = copy.deepcopy(real.references.original).eval()
    forget = real.split.forget_idx
    y = real.split.train_labels[forget]
    pixels = (real.data.train_images[forget].float() / 255).requires_grad_(True)
    F.cross_entropy(net(real.data.normalize(pixels * 255)), y).backward()
    x_adv = torch.round((pixels + eps * pixels.grad.sign()).clamp(0, 1) * 255) / 255
    with torch.no_grad():
        return net(real.data.normalize(x_adv * 255)).argmax(1), y


def test_boundary_shrink_trains_towards_f_ds_arg_max_even_where_fgsm_does_not_cross(real):
    loop = build(real, METHODS["boundary_shrink"], AWARE)
    adversarial, y = fgsm_labels(real, loop.hyper.eps)
    uncrossed = adversarial == y
    assert uncrossed.any() and (~uncrossed).any(), "the subset must hold both kinds of forget sample"
    labels = loop.adversarial_labels[real.split.forget_idx]
    assert torch.equal(labels, adversarial)
    assert torch.equal(labels[uncrossed], y[uncrossed]), "SU trains an uncrossed sample towards its own label"
    assert len(labels[~uncrossed].unique()) > 1, "the crossed class depends on the sample"


def test_boundary_shrink_nearest_wrong_option_never_keeps_the_true_class(real):
    cls = METHODS["boundary_shrink"]
    loop = build(real, cls, AWARE, hyper=dataclasses.replace(cls.default_hyper(AWARE), relabel="nearest_wrong"))
    adversarial, y = fgsm_labels(real, loop.hyper.eps)
    labels = loop.adversarial_labels[real.split.forget_idx]
    assert (labels != y).all()
    assert torch.equal(labels[adversarial != y], adversarial[adversarial != y])


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
    assert not loop.model.training, "DU's run_train_epoch keeps the whole model in eval mode"
    trained = [list(s.parameters()) for s in stages(loop.model)]
    unchanged = [all(torch.equal(a, b) for a, b in zip(t, r)) for t, r in zip(trained, reference)]
    assert unchanged == [True] * (len(trained) - k - 1) + [False] * (k + 1)


@pytest.mark.parametrize("name", ["cf_k", "eu_k"])
def test_the_l2_anchor_is_the_weights_training_starts_from(real, name):
    """DU's fk_finetune copies the model after any re-initialisation: the pull is 0 at the first step (EU-k's
    fresh stages are not pulled back towards f_D, which the anchor f_D would do)."""
    loop = build(real, METHODS[name])
    pull = sum(float((p.detach() - p0).pow(2).sum()) for p, p0 in zip(loop.params, loop.theta0))
    assert pull == 0.0
    original = dict(real.references.original.named_parameters())
    towards_f_d = sum(float((p.detach() - original[key]).pow(2).sum()) for key, p in loop.model.named_parameters()
                      if p.requires_grad)
    assert (towards_f_d > 1.0) == (name == "eu_k")


def test_laf_reads_fc1s_output_and_its_encoder_samples(real):
    cls = METHODS["laf"]
    plain = build(real, cls)
    after_relu = build(real, cls, hyper=dataclasses.replace(cls.default_hyper(REAL), embedding_relu=True))
    # cnn_small's fc1 output can be negative (LAF's CNN has no ReLU there); what its next layer sees cannot.
    assert (plain.teacher_embedding < 0).any() and (after_relu.teacher_embedding >= 0).all()
    torch.testing.assert_close(plain.teacher_embedding.clamp(min=0), after_relu.teacher_embedding)
    # LAF's encoders sample z = mu + sigma * eps at every call: two calls on the same e differ.
    e = plain.teacher_embedding[:8]
    noise = torch.Generator().manual_seed(0)
    with torch.no_grad():
        assert not torch.equal(reconstruction_error(plain.s_vae, e, noise), reconstruction_error(plain.s_vae, e, noise))
    plain.train_epoch()
    assert not plain.model.training, "LAF's classifier stays in eval mode"


def test_laf_r_head_stage_trains_lafs_fc2_one_retain_batch_per_forget_batch(real):
    cls = METHODS["laf_r"]
    hyper = dataclasses.replace(cls.default_hyper(REAL), epochs=1, head_epochs=1)
    loop = build(real, cls, hyper=hyper)
    loop.train_epoch()
    after_laf = copy.deepcopy(loop.model.state_dict())
    steps = loop.steps
    loop.train_epoch()
    # On cnn_small (as on LAF's CNN) fc2 is both linear layers after the 256-d embedding.
    head = {f"{name}.{p}" for name, m in loop.model.named_modules() if any(m is h for h in head_linears(loop.model))
            for p in ("weight", "bias")}
    assert len(head) == 4
    for key, value in loop.model.state_dict().items():
        assert torch.equal(value, after_laf[key]) == (key not in head), key
    assert loop.steps - steps == -(-len(real.split.forget_idx) // hyper.batch_size)
    assert loop.epoch == loop.epochs == 2


@pytest.fixture(scope="module")
def random_task(tmp_path_factory):
    """The random task (10% of D) on the same subset, label-aware: SCRUB's forget error can overshoot there."""
    return prepare(REAL.replace(task="random", random_ratio=0.1, targets="aware"), device="cpu",
                   cache_dir=tmp_path_factory.mktemp("random-task"))


def test_scrub_rewind_returns_the_epoch_whose_forget_error_matches_unseen_data(random_task):
    """A run whose forget error overshoots the forget validation error (max steps at lr 0.03): rewind returns
    an earlier epoch, chosen as DU's scrubv2 chooses it, recomputed here from a `final` run of the same
    trajectory; the epochs() metrics and the state a trial logs are that epoch's."""
    cls, cfg = METHODS["scrub"], random_task.cfg
    hyper = dataclasses.replace(cls.default_hyper(cfg), lr=0.03, msteps=2, epochs=5)
    final = build(random_task, cls, cfg, hyper=dataclasses.replace(hyper, selection="final"))
    weights = [copy.deepcopy(final.model.state_dict())]
    while final.epoch < final.epochs:
        final.train_epoch()
        weights.append(copy.deepcopy(final.model.state_dict()))
    forget, labels = random_task.split.forget_idx, random_task.split.train_labels
    classes = labels[forget].unique()
    test = torch.isin(random_task.data.test_labels, classes)
    net = copy.deepcopy(final.model).eval()

    def error(images, truth):
        with torch.no_grad():
            return 100.0 - 100.0 * float((net(random_task.data.normalize(images)).argmax(1) == truth).float().mean())

    target = error(random_task.data.test_images[test], random_task.data.test_labels[test])
    forget_errors = []
    for state in weights:
        net.load_state_dict(state)
        forget_errors.append(error(random_task.data.train_images[forget], labels[forget]))
    chosen = min(range(len(forget_errors)), key=lambda e: abs(forget_errors[e] - target))
    assert max(forget_errors) > target > min(forget_errors[1:]) and 0 < chosen < hyper.epochs, (forget_errors, target)

    rewind = build(random_task, cls, cfg, hyper=hyper)
    history = list(epochs(random_task, rewind))
    assert rewind.selected_epoch == chosen and history[-1]["scrub_selected_epoch"] == chosen
    for key, value in saved(rewind.state_dict())["model"].items():
        assert torch.equal(value, weights[chosen][key]), key
    net.load_state_dict(weights[chosen])
    assert history[-1]["avg_gap"] == random_task.evaluate(net)["avg_gap"]
    assert [round(e, 6) for e in rewind.forget_errors] == [round(e, 6) for e in forget_errors]


def test_scrub_rewind_resumes_exactly(random_task):
    cls, cfg = METHODS["scrub"], random_task.cfg
    hyper = dataclasses.replace(cls.default_hyper(cfg), lr=0.03, msteps=2, epochs=5)
    straight = build(random_task, cls, cfg, hyper=hyper)
    states = {}
    while straight.epoch < straight.epochs:
        straight.train_epoch()
        states[straight.epoch] = saved(straight.state_dict())
    resumed = build(random_task, cls, cfg, hyper=hyper)
    resumed.load_state_dict(states[3])
    while resumed.epoch < resumed.epochs:
        resumed.train_epoch()
    assert resumed.selected_epoch == straight.selected_epoch
    for (key, a), b in zip(resumed.model.state_dict().items(), straight.model.state_dict().values()):
        assert torch.equal(a, b), key


def test_ga_with_a_huge_learning_rate_raises_diverged_naming_the_epoch(real):
    cls = METHODS["ga"]
    loop = build(real, cls, hyper=dataclasses.replace(cls.default_hyper(REAL), lr=1e6, epochs=10))
    with pytest.raises(Diverged) as caught:
        while loop.epoch < loop.epochs:
            loop.train_epoch()
    assert caught.value.epoch == loop.epoch + 1 and caught.value.method == "ga"
    assert f"epoch {caught.value.epoch}" in str(caught.value)


def test_weights_that_overflow_on_the_epochs_last_step_are_a_divergence(real):
    """One step whose loss (taken before the update) is finite but whose update is not: the epoch's mean
    loss is finite, yet the model would give NaN outputs (and crash the attackers)."""
    cls = METHODS["ga"]
    loop = build(real, cls, hyper=dataclasses.replace(cls.default_hyper(REAL), lr=3e38, weight_decay=3e38, epochs=1, batch_size=1024))
    with pytest.raises(Diverged, match="weights are no longer finite") as caught:
        loop.train_epoch()
    assert caught.value.epoch == 1 and loop.steps == 1
