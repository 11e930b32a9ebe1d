"""Parity with the sources' code (issue 17): each baseline's update, one step or a few from fixed weights,
against a plain re-implementation of the SOURCE's rule written here from the reference code.

Sources (../shared/docs/BASELINES.md): DU = xcadet/deepunlearn, SC = meghdadk/SCRUB, LAF = ShaofeiShen768/LAF.
Each reference function names the file and function it re-implements; it is plain torch (the network's own
modules, torch.optim), never our method classes' internals. Every rule runs on cnn_small (Fashion-MNIST,
trained f_D) and on resnet18_cifar (BatchNorm, statistics set), float32 on the CPU:
- SGD methods (NegGrad+, CF-k, EU-k, SCRUB): the weights after the steps (parameters and BatchNorm buffers)
  equal the reference's within 1e-6;
- Adam methods (Bad Teacher, LAF, LAF+R; see "the Adam methods" below for why): the step's loss and gradient
  equal the source's within 1e-6 (of the largest entry), and the weights torch's Adam step from that gradient.
Each check also requires the step to move the weights by more than 1e-4, so a vacuous step cannot pass.
Where ours departed from the source (NegGrad+'s forget order, Bad Teacher's loss scale), the test asserts
the source's rule.

Making a step comparable: batch sizes are at least the set's size where the source's loader order is random
(a batch is the whole set), and the order is replayed from our documented stream anyway (common.py: one
numpy PCG64 Generator seeded by cfg.seed, one permutation per `batches` call, in the order the method draws).
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from method_helpers import REAL, RESNET, build
from torch import nn

from mixunlearn.methods import METHODS

AWARE = REAL.replace(targets="aware")
WHOLE = 10**6            # a batch size that makes a batch the whole set
ATOL = 1e-6
MODELS = ("cnn_small", "resnet18_cifar")


# ---- what every case shares ----------------------------------------------------------------------

def track(request, model: str):
    """(prepared, cfg) of a model's track: the conftest fixtures, label-aware (the sources read labels)."""
    if model == "cnn_small":
        return request.getfixturevalue("real"), AWARE
    return request.getfixturevalue("resnet"), RESNET


def x(prepared, idx: torch.Tensor) -> torch.Tensor:
    return prepared.data.normalize(prepared.data.train_images[idx])


def y(prepared, idx: torch.Tensor) -> torch.Tensor:
    return prepared.split.train_labels[idx]


def shuffled(rng: np.random.Generator, idx: torch.Tensor) -> torch.Tensor:
    """One draw of our documented order (common.Method.batches)."""
    return idx[torch.as_tensor(rng.permutation(len(idx)))]


def f_d(prepared) -> nn.Module:
    return copy.deepcopy(prepared.references.original).requires_grad_(True)


def hyper(cls, cfg, **values):
    return dataclasses.replace(cls.default_hyper(cfg), **values)


def assert_same_weights(actual: nn.Module, expected: nn.Module, start: nn.Module | None = None) -> None:
    """Every parameter and buffer within ATOL; and (given the start) the step moved them by > 100 ATOL."""
    got, want = actual.state_dict(), expected.state_dict()
    assert got.keys() == want.keys()
    gaps = {k: float((got[k].double() - want[k].double()).abs().max()) for k in want if want[k].numel()}
    worst = max(gaps, key=gaps.get)
    assert gaps[worst] <= ATOL, f"{worst} differs from the source's rule by {gaps[worst]:.3g}"
    if start is not None:
        first = start.state_dict()
        moved = max(float((want[k].double() - first[k].double()).abs().max()) for k in want if want[k].numel())
        assert moved > 100 * ATOL, f"the step moved the weights by only {moved:.3g}: the check would be vacuous"


def l2_penalty(model: nn.Module, model_init: nn.Module, weight_decay: float) -> torch.Tensor:
    """DU munl/unlearning/scrub_utils.py `l2_penalty` (SC MIA_experiments.ipynb, same): (wd / 2) * the summed
    squared distance to model_init over the parameters that require grad."""
    l2 = 0
    for p, p0 in zip(model.parameters(), model_init.parameters()):
        if p.requires_grad:
            l2 = l2 + (p - p0).pow(2).sum()
    return l2 * (weight_decay / 2.0)


def distill_kl(logit_s: torch.Tensor, logit_t: torch.Tensor, T: float) -> torch.Tensor:
    """DU thirdparty/repdistiller/distiller_zoo/KD.py `DistillKL.forward` (size_average=False is reduction sum)."""
    return F.kl_div(F.log_softmax(logit_s / T, dim=1), F.softmax(logit_t / T, dim=1),
                    reduction="sum") * T**2 / logit_s.shape[0]


# ---- NegGrad+ ------------------------------------------------------------------------------------

def neggrad_plus_source(prepared, cfg, h, *, train_mode: bool = False) -> nn.Module:
    """DU munl/unlearning/neggradplus.py `negative_grad` + `run_neggrad_epoch` (SC MIA_experiments.ipynb
    `run_neggrad_epoch`): model.eval(); separate passes for the retain and the forget batch;
    loss = alpha * (CE_r + l2_penalty(model, model_init, wd)) - (1 - alpha) * CE_f; model_init = f_D.
    train_mode=True is the rule it is not (one train-mode model), to show the check tells them apart."""
    model, rng = f_d(prepared), np.random.Generator(np.random.PCG64(cfg.seed))
    model_init = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)
    for _ in range(h.epochs):
        model.train(train_mode)
        retain = shuffled(rng, prepared.split.retain_idx)     # the whole set: one batch each
        forget = shuffled(rng, prepared.split.forget_idx)
        output_r, output_f = model(x(prepared, retain)), model(x(prepared, forget))
        loss = (h.alpha * (F.cross_entropy(output_r, y(prepared, retain)) + l2_penalty(model, model_init, h.l2_init))
                - (1 - h.alpha) * F.cross_entropy(output_f, y(prepared, forget)))
        model.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def check_neggrad_plus(prepared, cfg) -> None:
    cls = METHODS["neggrad_plus"]
    # two steps: the l2 term's gradient is zero at f_D, so only the second step shows it
    h = hyper(cls, cfg, epochs=2, batch_size=WHOLE, lr=0.01, momentum=0.9, weight_decay=5e-4,
              alpha=0.9, l2_init=0.5)
    loop = build(prepared, cls, cfg, hyper=h)
    for _ in range(h.epochs):
        loop.train_epoch()
    expected = neggrad_plus_source(prepared, cfg, h)
    assert_same_weights(loop.model, expected, prepared.references.original)
    # eval mode: BatchNorm's running statistics are f_D's, never updated
    for (key, got), first in zip(loop.model.named_buffers(), prepared.references.original.buffers()):
        assert torch.equal(got, first), key
    if cfg.model == "resnet18_cifar":   # where the mode matters, the check can tell
        train_mode = neggrad_plus_source(prepared, cfg, h, train_mode=True)
        gap = max(float((a - b).abs().max()) for a, b in zip(train_mode.state_dict().values(),
                                                             expected.state_dict().values()))
        assert gap > 100 * ATOL


def neggrad_plus_cycled_source(prepared, cfg, h) -> nn.Module:
    """DU munl/unlearning/neggradplus.py `run_neggrad_epoch` (SC's alike), one epoch with D_f smaller than D_r:
    `zip(retain_loader, cycle(forget_loader))`; itertools.cycle saves the batches of its first pass and
    replays them, so D_f's batches repeat in the first pass's order (a fresh order only per epoch)."""
    model, rng = f_d(prepared).eval(), np.random.Generator(np.random.PCG64(cfg.seed))
    optimizer = torch.optim.SGD(model.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)
    retain = shuffled(rng, prepared.split.retain_idx).split(h.batch_size)
    forget = shuffled(rng, prepared.split.forget_idx).split(h.batch_size)   # our first draw, as its first pass
    for batch_retain, batch_forget in zip(retain, itertools.cycle(forget)):
        output_r, output_f = model(x(prepared, batch_retain)), model(x(prepared, batch_forget))
        loss = (h.alpha * F.cross_entropy(output_r, y(prepared, batch_retain))
                - (1 - h.alpha) * F.cross_entropy(output_f, y(prepared, batch_forget)))
        model.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def test_neggrad_plus_replays_the_first_pass_of_the_forget_batches(real):
    cls = METHODS["neggrad_plus"]
    # 900 retain images in 18 batches against 100 forget images in 2: D_f's batches come round 9 times
    h = hyper(cls, AWARE, epochs=1, batch_size=50, lr=0.01, momentum=0.9, weight_decay=5e-4, alpha=0.9, l2_init=0.0)
    loop = build(real, cls, AWARE, hyper=h)
    loop.train_epoch()
    assert_same_weights(loop.model, neggrad_plus_cycled_source(real, AWARE, h), real.references.original)


# ---- CF-k and EU-k -------------------------------------------------------------------------------

def last_k_blocks(model: nn.Module, k: int) -> list[nn.Module]:
    """DU munl/models/__init__.py `select_last_k_blocks` + `get_model_classifier`: the last k of the
    ResNet's layer1..layer4, then its classifier (fc). DU supports ResNet and ViT only; on cnn_small the
    blocks are its conv and hidden linear layers, the classifier its output layer."""
    if hasattr(model, "layer4"):
        blocks = [model.layer1, model.layer2, model.layer3, model.layer4]
        return blocks[len(blocks) - k:] + [model.classifier]
    blocks = [model.conv_blocks[0], model.conv_blocks[3], model.classifier[1], model.classifier[3]]
    return blocks[len(blocks) - k:] + [model.classifier[5]]


def du_init_weights(m: nn.Module) -> None:
    """DU munl/models/__init__.py `init_weights`."""
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_uniform_(m.weight, mode="fan_out", nonlinearity="relu")
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.constant_(m.weight, 1)
        nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)


def fk_source(prepared, cfg, h, *, reinitialise: bool) -> tuple[nn.Module, nn.Module]:
    """DU munl/unlearning/catastrophic_forgetting_k.py / exact_unlearning_k.py `unlearn`: freeze_model, unfreeze
    the last k blocks + classifier (EU-k first `reinialize_modules` them: init_weights in that module order,
    here under our seeded RNG, cfg.seed + 1), then scrub_utils.py `fk_finetune`: model_init = a copy taken
    now; SGD(lr, weight_decay=0), no momentum; per epoch (0-based) thirdparty/repdistiller/helper/util.py
    `adjust_learning_rate`: lr * rate^#(epoch > m), m in int(.5E), int(.8E), int(.9E); `run_train_epoch`:
    model.eval(), loss = CE + l2_penalty(model, model_init, lam). Returns (the re-initialised start, the end)."""
    model, rng = f_d(prepared), np.random.Generator(np.random.PCG64(cfg.seed))
    model.requires_grad_(False)
    blocks = last_k_blocks(model, h.k)
    if reinitialise:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(cfg.seed + 1)
            for block in blocks:
                block.apply(du_init_weights)
    for block in blocks:
        block.requires_grad_(True)
    model_init = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=h.lr, weight_decay=0.0)
    milestones = [int(h.epochs * 0.5), int(h.epochs * 0.8), int(h.epochs * 0.9)]
    for epoch in range(h.epochs):
        steps = int(np.sum(epoch > np.asarray(milestones)))
        if steps > 0:
            for group in optimizer.param_groups:
                group["lr"] = h.lr * h.lr_decay**steps
        model.eval()
        retain = shuffled(rng, prepared.split.retain_idx)
        output = model(x(prepared, retain))
        loss = F.cross_entropy(output, y(prepared, retain)) + l2_penalty(model, model_init, h.lam)
        model.zero_grad()
        loss.backward()
        optimizer.step()
    return model_init, model


def check_fk(prepared, cfg, name: str) -> None:
    cls = METHODS[name]
    # 3 epochs: milestones 1, 2, 2, so the 0-based third epoch (2 > 1) runs at lr * lr_decay; k = 1 on the
    # ResNet (DU's default: layer4 + fc), 2 on cnn_small (the hidden linear layers + the output layer)
    h = hyper(cls, cfg, epochs=3, batch_size=WHOLE, lr=0.05, k=1 if cfg.model == "resnet18_cifar" else 2,
              lam=0.5, lr_decay=0.5)
    loop = build(prepared, cls, cfg, hyper=h)
    start = copy.deepcopy(loop.model)
    for _ in range(h.epochs):
        loop.train_epoch()
    expected_start, expected = fk_source(prepared, cfg, h, reinitialise=name == "eu_k")
    assert_same_weights(start, expected_start)       # EU-k: DU's init_weights; CF-k: f_D
    assert_same_weights(loop.model, expected, expected_start)
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(h.lr * h.lr_decay)   # the third epoch's


# ---- SCRUB ---------------------------------------------------------------------------------------

def scrub_source(prepared, cfg, h, *, after_epoch=None) -> nn.Module:
    """DU munl/unlearning/scrubv2.py `SCRUBUnlearningV2.unlearn` with thirdparty/repdistiller/helper/loops.py
    `train_distill` (opt.distill "kd", beta 0): teacher = f_D in eval mode, student = f_D's copy in train
    mode; SGD(lr, momentum, wd); for epoch = 1..E: lr * 0.1^#(epoch > m) (`adjust_learning_rate`, 1-based);
    if epoch <= msteps: over D_f's loader, which does not shuffle (`default_loaders_no_shuffle_forget`),
    loss = -DistillKL; then over D_r: gamma * CE + alpha * DistillKL. `param_dist(model_s, model_s, ...)`
    is the student's distance to itself: zero, with a zero gradient, so it is left out.
    The frozen teacher's logits (eval mode: a function of each image alone) are taken in one pass over the
    training set, not per batch as DU does: the same values, but per-batch passes round differently, and on
    the untrained resnet18_cifar a 1e-7 change in the weights moves the next gradient by ~1% (ReLU kinks;
    float64 alike), so that rounding would grow past 1e-6 by the second step on either implementation.
    after_epoch(epoch, student) is called at the end of each epoch (the rewind test records there)."""
    student, rng = f_d(prepared), np.random.Generator(np.random.PCG64(cfg.seed))
    teacher = copy.deepcopy(prepared.references.original).eval()
    with torch.no_grad():
        teacher_logits = teacher(x(prepared, torch.arange(len(prepared.split.train_labels))))
    optimizer = torch.optim.SGD(student.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)
    milestones = [int(h.epochs * 0.5), int(h.epochs * 0.8), int(h.epochs * 0.9)]

    def step(idx: torch.Tensor, maximize: bool) -> None:
        logit_s, logit_t = student(x(prepared, idx)), teacher_logits[idx]
        if maximize:
            loss = -distill_kl(logit_s, logit_t, h.T)
        else:
            loss = h.gamma * F.cross_entropy(logit_s, y(prepared, idx)) + h.alpha * distill_kl(logit_s, logit_t, h.T)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for epoch in range(1, h.epochs + 1):
        steps = int(np.sum(epoch > np.asarray(milestones)))
        if steps > 0:
            for group in optimizer.param_groups:
                group["lr"] = h.lr * 0.1**steps
        student.train()
        teacher.eval()
        if epoch <= h.msteps:
            for idx in prepared.split.forget_idx.split(h.forget_batch_size):
                step(idx, maximize=True)
        for idx in shuffled(rng, prepared.split.retain_idx).split(h.batch_size):
            step(idx, maximize=False)
        if after_epoch is not None:
            after_epoch(epoch, student)
    return student


def check_scrub(prepared, cfg) -> None:
    cls = METHODS["scrub"]
    # cnn_small, 3 epochs: milestones 1, 2, 2 (epoch 2 at lr * 0.1, epoch 3 at lr * 0.1^3) and msteps 2: there
    # the student equals the teacher at f_D, so the first max steps have a zero gradient and epoch 2's show
    # D_f's order. resnet18_cifar (train-mode BatchNorm: the student differs from the start), 2 epochs:
    # milestones 1, 1, 1 (epoch 2 at lr * 0.1^3), msteps 1. D_f in two batches, which come in index order.
    epochs, msteps = (3, 2) if cfg.model == "cnn_small" else (2, 1)
    h = hyper(cls, cfg, epochs=epochs, msteps=msteps, batch_size=WHOLE,
              forget_batch_size=len(prepared.split.forget_idx) // 2 + 1, lr=0.05, momentum=0.9,
              weight_decay=5e-4, gamma=1.0, alpha=0.5, T=4.0, selection="final")
    loop = build(prepared, cls, cfg, hyper=h)
    for _ in range(h.epochs):
        loop.train_epoch()
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(h.lr * 1e-3)
    assert_same_weights(loop.model, scrub_source(prepared, cfg, h), prepared.references.original)


def error(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """100 - top-1 accuracy (%) in eval mode (DU thirdparty/repdistiller/helper/loops.py `validate`)."""
    model.eval()
    with torch.no_grad():
        correct = int((model(images).argmax(1) == labels).sum())
    return 100 - 100 * correct / len(labels)


def scrub_rewind_source(prepared, cfg, h) -> tuple[int, nn.Module, nn.Module]:
    """DU munl/unlearning/scrubv2.py `SCRUBUnlearningV2.unlearn`'s selection: the forget error (100 - the
    accuracy on D_f) at the start of each epoch and after the last, acc_fs[0..E]; the forget validation
    error of the final model, acc_fvs[-1], on the held-out images of D_f's classes (`fgt_cls`; ours: the
    test set's); selected_idx = argmin_i |acc_fs[i] - acc_fvs[-1]|, the first on a tie (`min`); index i >= 1
    loads the checkpoint after epoch i. Index 0 is f_D (DU's `if selected_idx != 0` keeps the final model
    there, a bug this project fixes; see mixunlearn/methods/scrub.py). Returns (index, its model, the final)."""
    forget = prepared.split.forget_idx
    classes = y(prepared, forget).unique()
    held_out = torch.isin(prepared.data.test_labels, classes)
    val_images = prepared.data.normalize(prepared.data.test_images[held_out])
    val_labels = prepared.data.test_labels[held_out]
    acc_fs = [error(f_d(prepared), x(prepared, forget), y(prepared, forget))]
    checkpoints = {}

    def after_epoch(epoch, student):
        acc_fs.append(error(student, x(prepared, forget), y(prepared, forget)))
        checkpoints[epoch] = copy.deepcopy(student)

    final = scrub_source(prepared, cfg, h, after_epoch=after_epoch)
    acc_fv = error(final, val_images, val_labels)
    selected_idx, _ = min(enumerate(acc_fs), key=lambda e: abs(e[1] - acc_fv))
    return selected_idx, checkpoints[selected_idx] if selected_idx else f_d(prepared), final


REWIND = {
    # 11, 65, 62, 62 | 72: epoch 1, by 3 points
    "cnn_small-epoch_1": ("cnn_small", 3, 0.003, 1, 64, 1),
    # 11, 18, 20, 20 | 36: epochs 2 and 3 tie; the first, an intermediate checkpoint
    "cnn_small-epoch_2_of_a_tie": ("cnn_small", 3, 0.03, 1, WHOLE, 2),
    # 11, 11, 11, 11 | 16: all tie; the first, f_D
    "cnn_small-f_D": ("cnn_small", 3, 0.001, 1, WHOLE, 0),
    # one epoch (at lr * 0.1^3: its milestones are 0, 0, 0): 11, 65 | 72: the final model
    "cnn_small-final": ("cnn_small", 1, 3.0, 1, 64, 1),
    # the untrained ResNet: every forget error ties; f_D
    "resnet18_cifar-f_D": ("resnet18_cifar", 2, 0.01, 1, WHOLE, 0),
}


@pytest.mark.parametrize("case", REWIND)
def test_scrub_rewind_returns_the_epoch_dus_rule_selects(request, case):
    model, epochs, lr, msteps, batch_size, selects = REWIND[case]
    prepared, cfg = track(request, model)
    cls = METHODS["scrub"]
    h = hyper(cls, cfg, epochs=epochs, msteps=msteps, batch_size=batch_size, forget_batch_size=64, lr=lr,
              momentum=0.9, weight_decay=5e-4, T=4.0, selection="rewind")
    loop = build(prepared, cls, cfg, hyper=h)
    while loop.epoch < loop.epochs:
        loop.train_epoch()
    selected_idx, expected, final = scrub_rewind_source(prepared, cfg, h)
    assert selected_idx == selects, (f"{case} now selects epoch {selected_idx}: f_D or the data changed; "
                                     "choose an lr that selects the epoch named")
    assert loop.selected_epoch == selected_idx
    assert_same_weights(loop.model, expected)
    if selected_idx == 0:   # DU's code would return the final model here: it must differ from f_D
        assert max(float((a - b).abs().max()) for a, b in zip(final.state_dict().values(),
                                                              expected.state_dict().values())) > 100 * ATOL


# ---- the Adam methods: the loss and its gradient, then Adam's step -------------------------------
# One Adam step moves a weight by lr * g / (|g| + 1e-8): where |g| is near 1e-8, float rounding of g (1e-8
# on a gradient of 0.01) moves the weight by up to lr, so equal rules give weights 1e-5 apart at lr 1e-3.
# For Bad Teacher, LAF and LAF+R the check is therefore the other form: the step's loss and its
# gradient against the source's (within 1e-6), and the weights against torch's Adam step from our gradient.

def gradients(net: nn.Module) -> dict[str, torch.Tensor | None]:
    """The gradients a method's last backward left on its network."""
    return {k: None if p.grad is None else p.grad.clone() for k, p in net.named_parameters()}


def first_moments(optimizer: torch.optim.Adam, net: nn.Module) -> dict[str, torch.Tensor | None]:
    """The gradient of an Adam's first step, read back from its state (exp_avg = (1 - beta1) g)."""
    beta1 = optimizer.param_groups[0]["betas"][0]
    return {k: optimizer.state[p]["exp_avg"] / (1 - beta1) if p in optimizer.state else None
            for k, p in net.named_parameters()}


def assert_same_gradients(ours: dict, source: dict, scale: float = 1.0) -> None:
    """ours == scale * source, within 1e-6 of the largest gradient entry (at least 1e-6); no gradient alike."""
    assert ours.keys() == source.keys()
    assert {k for k in ours if ours[k] is None} == {k for k in source if source[k] is None}
    present = [k for k in source if source[k] is not None]
    largest = max(float(source[k].abs().max()) * abs(scale) for k in present)
    gaps = {k: float((ours[k] - scale * source[k]).abs().max()) for k in present}
    worst = max(gaps, key=gaps.get)
    assert gaps[worst] <= ATOL * max(1.0, largest), \
        f"{worst}: the gradient differs from the source's by {gaps[worst]:.3g} (largest entry {largest:.3g})"


def assert_adam_step(after: nn.Module, start: nn.Module, grads: dict, lr: float) -> None:
    """after = torch.optim.Adam(lr; default betas and eps, no weight decay)'s first step from start with grads
    (None: not stepped), buffers included; and the step moved the weights."""
    expected = copy.deepcopy(start)
    params = []
    for k, p in expected.named_parameters():
        p.grad = None if grads[k] is None else grads[k].clone()
        if p.grad is not None:
            params.append(p)
    torch.optim.Adam(params, lr=lr).step()
    assert_same_weights(after, expected, start)


# ---- Bad Teacher ---------------------------------------------------------------------------------

def unlearner_loss(output, labels, full_teacher_logits, unlearn_teacher_logits, KL_temperature):
    """DU munl/unlearning/bad_teacher.py `UnlearnerLoss`: label 1 marks a forget sample; F.kl_div with its
    default reduction, "mean": the sum over batch x classes divided by batch x classes."""
    labels = labels.unsqueeze(1)
    f_teacher_out = F.softmax(full_teacher_logits / KL_temperature, dim=1)
    u_teacher_out = F.softmax(unlearn_teacher_logits / KL_temperature, dim=1)
    overall_teacher_out = labels * u_teacher_out + (1 - labels) * f_teacher_out
    student_out = F.log_softmax(output / KL_temperature, dim=1)
    with warnings.catch_warnings():   # torch warns that "mean" is not the KL's batch mean: that is the point
        warnings.simplefilter("ignore", UserWarning)
        return F.kl_div(student_out, overall_teacher_out, reduction="mean")


def bad_teacher_source(prepared, cfg, h, incompetent: nn.Module):
    """DU munl/unlearning/bad_teacher.py `blindspot_unlearner` + `unlearning_step`, one step: both teachers in
    eval mode, the student as DU's pipeline hands it over (a freshly loaded torchvision model: train mode),
    on shuffled D_r + D_f (here one batch); Adam(lr, weight decay 0). The incompetent teacher's random
    weights are an input (ours). Returns (the student after its forward pass, the loss, its gradient)."""
    student, rng = f_d(prepared).train(), np.random.Generator(np.random.PCG64(cfg.seed))
    teacher, incompetent = copy.deepcopy(prepared.references.original).eval(), copy.deepcopy(incompetent).eval()
    everyone = shuffled(rng, torch.cat([prepared.split.retain_idx, prepared.split.forget_idx]))
    is_forget = torch.isin(everyone, prepared.split.forget_idx).float()
    with torch.no_grad():
        full, unlearn = teacher(x(prepared, everyone)), incompetent(x(prepared, everyone))
    loss = unlearner_loss(student(x(prepared, everyone)), is_forget, full, unlearn, h.tau)
    loss.backward()
    return student, float(loss.detach()), gradients(student)


def run_bad_teacher(prepared, cfg):
    h = hyper(METHODS["bad_teacher"], cfg, epochs=1, batch_size=WHOLE, lr=1e-3, tau=2.0)
    loop = build(prepared, METHODS["bad_teacher"], cfg, hyper=h)
    loop.train_epoch()
    return h, loop, bad_teacher_source(prepared, cfg, h, loop.incompetent)


def check_bad_teacher(prepared, cfg) -> None:
    """The source's rule, its loss's scale included: F.kl_div's default "mean" divides by the batch and the
    classes (a "batchmean" would make the loss and gradient C = 10 times the source's)."""
    h, loop, (student, loss, grads) = run_bad_teacher(prepared, cfg)
    assert loop.last_loss == pytest.approx(loss, rel=ATOL)
    assert_same_gradients(gradients(loop.model), grads)
    assert_adam_step(loop.model, student, gradients(loop.model), h.lr)   # BatchNorm: train-mode statistics


# ---- LAF and LAF+R -------------------------------------------------------------------------------

class LafEncoder(nn.Module):
    """LAF Model.py `CNN_VAE_Encoder` / `ResNet_VAE_Encoder` (input d: 256 there, the embedding's size here).
    LAF draws eps = torch.randn_like(sigma) at every call; here eps is passed in, replayed from our stream."""

    def __init__(self, dim: int, latent_dims: int) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(dim, 128), nn.Linear(128, 32)
        self.linear3_1, self.linear3_2 = nn.Linear(32, latent_dims), nn.Linear(32, latent_dims)

    def forward(self, x, eps):
        x = F.relu(self.linear2(F.relu(self.linear1(x))))
        mu = self.linear3_1(x)
        sigma = torch.exp(0.5 * self.linear3_2(x))
        return mu + sigma * eps, mu, sigma


class LafDecoder(nn.Module):
    """LAF Model.py `CNN_VAE_Decoder` / `ResNet_VAE_Decoder`."""

    def __init__(self, dim: int, latent_dims: int) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(latent_dims, 32), nn.Linear(32, 128)
        self.linear3 = nn.Linear(128, dim)

    def forward(self, z):
        return torch.sigmoid(self.linear3(F.relu(self.linear2(F.relu(self.linear1(z))))))


class LafVAE(nn.Module):
    """LAF Model.py `VariationalAutoencoder.forward`: (decoder(z), z, mu, sigma)."""

    def __init__(self, dim: int, latent_dims: int) -> None:
        super().__init__()
        self.encoder, self.decoder = LafEncoder(dim, latent_dims), LafDecoder(dim, latent_dims)

    def forward(self, x, eps):
        z, mu, sigma = self.encoder(x, eps)
        return self.decoder(z), z, mu, sigma


def laf_vaes(cfg, dim: int, latent: int) -> tuple[LafVAE, LafVAE]:
    """s_vae, u_vae as LAF.ipynb creates them, under our seeded RNG (cfg.seed + 4); same layer order as ours."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 4)
        return LafVAE(dim, latent), LafVAE(dim, latent)


def laf_embedding(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """LAF Model.py `CNN.forward`'s `embedding = self.fc1(x)`: the first classifier Linear's output, before
    any activation; resnet18_cifar has one Linear, so its pooled features (LAF's ResNet: before its fc1)."""
    if hasattr(model, "layer4"):
        h = model.layer4(model.layer3(model.layer2(model.layer1(model.stem(images)))))
        return F.adaptive_avg_pool2d(h, 1).flatten(1)
    return model.classifier[1](model.classifier[0](model.conv_blocks(images)))


def extractor_loss_functionnmse(e_out, e):
    """LAF VUnlearning.py `extractor_loss_functionnmse`."""
    mse = nn.MSELoss(reduction="none")(e_out, e).sum(dim=1)
    return torch.sum(torch.exp(mse / (mse + 1)))


def extractor_loss_functioncosine(s_e, s_e_teacher, u_e, u_e_teacher, temp):
    """LAF VUnlearning.py `extractor_loss_functioncosine` (CosineEmbeddingLoss with target 1: 1 - cos)."""
    cos1 = nn.CosineEmbeddingLoss(reduction="none")(s_e, s_e_teacher, torch.ones(s_e.shape[0]))
    cos2 = nn.CosineEmbeddingLoss(reduction="none")(u_e, u_e_teacher, torch.ones(u_e.shape[0]))
    return torch.sum(torch.log(torch.exp(cos1) / torch.sum(torch.exp(cos2 / temp))))


def laf_source(prepared, cfg, h, rng):
    """LAF VUnlearning.py `extractor_unlearning`, the first zipped (D_f, D_r) batch, from f_D: the model, the
    teacher and both VAEs in eval mode (`vae_train` left the model so); loss2 = nmse(s_vae(e_r)) -
    nmse(u_vae(e_f)), then loss3 = the cosine alignment with the teacher's embeddings. The VAEs are LAF's,
    at our seeded initialisation; their noise is our sampling stream (cfg.seed + 5), D_r's batch first.
    Returns (loss2, its gradient, loss3, its gradient), both at f_D (the tests run one step at lr 0)."""
    model, teacher = f_d(prepared).eval(), copy.deepcopy(prepared.references.original).eval()
    dim = laf_embedding(teacher, x(prepared, prepared.split.forget_idx[:1])).shape[1]
    s_vae, u_vae = laf_vaes(cfg, dim, h.latent)
    s_vae.eval(), u_vae.eval()
    noise = torch.Generator().manual_seed(cfg.seed + 5)
    u_idx = shuffled(rng, prepared.split.forget_idx).split(h.batch_size)[0]
    s_idx = shuffled(rng, prepared.split.retain_idx).split(h.batch_size)[0]
    u_data, s_data = x(prepared, u_idx), x(prepared, s_idx)
    s_e = laf_embedding(model, s_data)
    s_e_out, *_ = s_vae(s_e, torch.randn(len(s_e), h.latent, generator=noise))
    u_e = laf_embedding(model, u_data)
    u_u_e_out, *_ = u_vae(u_e, torch.randn(len(u_e), h.latent, generator=noise))
    loss2 = extractor_loss_functionnmse(s_e_out, s_e) - extractor_loss_functionnmse(u_u_e_out, u_e)
    loss2.backward()
    grads2 = gradients(model)
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        s_e_teacher, u_e_teacher = laf_embedding(teacher, s_data), laf_embedding(teacher, u_data)
    loss3 = extractor_loss_functioncosine(laf_embedding(model, s_data), s_e_teacher,
                                          laf_embedding(model, u_data), u_e_teacher, h.temp)
    loss3.backward()
    return float(loss2.detach()), grads2, float(loss3.detach()), gradients(model)


def laf_hyper(cls, cfg, prepared, **values):
    # one forget batch (D_f whole) zipped with the first D_r batch of its size: one step per stage;
    # vae_epochs 0: the VAEs stay at their seeded initialisation, fixed inputs here (stage 0 is tested below)
    return hyper(cls, cfg, epochs=1, batch_size=len(prepared.split.forget_idx), vae_epochs=0, **values)


def check_laf(prepared, cfg) -> None:
    """Two runs, each moving the weights by one of the two steps: the other's lr is 0 (Adam then leaves the
    weights as they are), so both gradients are taken at f_D and compared with the source's there."""
    cls = METHODS["laf"]
    loss2, grads2, loss3, grads3 = laf_source(prepared, cfg, laf_hyper(cls, cfg, prepared),
                                              np.random.Generator(np.random.PCG64(cfg.seed)))
    f_D = prepared.references.original
    alignment = build(prepared, cls, cfg, hyper=laf_hyper(cls, cfg, prepared, lr_ue=0.0, lr_ra=1e-3))
    alignment.train_epoch()
    assert alignment.last_loss == pytest.approx((loss2 + loss3) / 2, rel=ATOL)   # the epoch's two step losses
    assert_same_gradients(first_moments(alignment.opt_ue, alignment.model), grads2)
    assert_same_gradients(gradients(alignment.model), grads3)
    assert_adam_step(alignment.model, f_D, gradients(alignment.model), 1e-3)
    extractor = build(prepared, cls, cfg, hyper=laf_hyper(cls, cfg, prepared, lr_ue=1e-3, lr_ra=0.0))
    extractor.train_epoch()
    assert_same_gradients(first_moments(extractor.opt_ue, extractor.model), grads2)
    assert_adam_step(extractor.model, f_D, first_moments(extractor.opt_ue, extractor.model), 1e-3)


def head_of(model: nn.Module) -> list[nn.Module]:
    """LAF's fc2, the Linear layers after the embedding: cnn_small's Linear(256, 128) and Linear(128, 10); on
    resnet18_cifar (no embedding layer) its one Linear."""
    return [model.classifier] if hasattr(model, "layer4") else [model.classifier[3], model.classifier[5]]


def check_laf_r(prepared, cfg) -> None:
    """LAF VUnlearning.py `classifier_unlearning` after LAF's epoch (here at lr 0, so from f_D): Adam(fc2,
    head_lr) and CE on D_r, one step per zipped (D_f, D_r) batch; nothing switches the model out of eval mode."""
    cls = METHODS["laf_r"]
    h = laf_hyper(cls, cfg, prepared, lr_ue=0.0, lr_ra=0.0, head_epochs=1, head_lr=1e-3)
    loop = build(prepared, cls, cfg, hyper=h)
    while loop.epoch < loop.epochs:
        loop.train_epoch()
    rng = np.random.Generator(np.random.PCG64(cfg.seed))
    for _ in range(h.epochs):   # LAF's epoch draws D_f's order, then D_r's
        shuffled(rng, prepared.split.forget_idx), shuffled(rng, prepared.split.retain_idx)
    model = f_d(prepared).eval()
    shuffled(rng, prepared.split.forget_idx)   # zipped with D_r's batches: one step per D_f batch (here one)
    remain = shuffled(rng, prepared.split.retain_idx).split(h.batch_size)
    F.cross_entropy(model(x(prepared, remain[0])), y(prepared, remain[0])).backward()
    head = {id(p) for layer in head_of(model) for p in layer.parameters()}
    source = {k: p.grad.clone() if id(p) in head else None for k, p in model.named_parameters()}
    ours = gradients(loop.model)
    stepped = {k: ours[k] if source[k] is not None else None for k in ours}   # what Adam(fc2) may step
    assert_same_gradients(stepped, source)
    assert_adam_step(loop.model, prepared.references.original, stepped, h.head_lr)   # the rest stays f_D's


def vae_loss_function(x_out, x, mu, sigma):
    """LAF Train.py `vae_loss_function`."""
    bce = F.mse_loss(x_out, x, reduction="sum") / x.shape[0]
    kld = -0.5 * torch.sum(torch.log(sigma.pow(2) + 1e-8) + 1 - mu.pow(2) - sigma.pow(2)) / x.shape[0]
    return bce + kld * 0.025


@pytest.mark.parametrize("model", MODELS)
def test_laf_stage_0_trains_the_vaes_as_vae_train(request, model):
    """LAF Train.py `vae_train` (LAF.ipynb: s_vae on loaders['train'], the whole training set; u_vae on
    loaders['unlearn'], D_f): the classifier in eval mode gives e; Adam(lr 1e-3) per VAE; per batch
    vae_loss_function(vae(e), e, mu, sigma). One epoch of one batch each (the whole set); the VAEs' noise is
    our stream seeded cfg.seed + 4, s_vae's draw first. The gradients are what each VAE's last backward
    left on it (its optimizer is gone); the weights, Adam's step from the seeded initialisation."""
    prepared, cfg = track(request, model)
    cls = METHODS["laf"]
    h = hyper(cls, cfg, epochs=1, batch_size=len(prepared.split.forget_idx), vae_epochs=1, vae_batch_size=WHOLE,
              lr_ue=0.0, lr_ra=0.0)
    loop = build(prepared, cls, cfg, hyper=h)
    loop.train_epoch()
    teacher, rng = copy.deepcopy(prepared.references.original).eval(), np.random.Generator(np.random.PCG64(cfg.seed))
    noise = torch.Generator().manual_seed(cfg.seed + 4)
    everyone = torch.arange(len(prepared.split.train_labels))
    dim = laf_embedding(teacher, x(prepared, everyone[:1])).shape[1]
    starts = laf_vaes(cfg, dim, h.latent)
    for ours, start, idx in zip((loop.s_vae, loop.u_vae), starts, (everyone, prepared.split.forget_idx)):
        vae = copy.deepcopy(start).train()
        (batch,) = shuffled(rng, idx).split(h.vae_batch_size)   # one batch: the whole set
        with torch.no_grad():
            e = laf_embedding(teacher, x(prepared, batch))
        e_out, _, mu, sigma = vae(e, torch.randn(len(e), h.latent, generator=noise))
        vae_loss_function(e_out, e, mu, sigma).backward()
        # ours in LAF's layout: the same layers in the same order
        after = copy.deepcopy(start)
        names = [k for k, _ in after.named_parameters()]
        with torch.no_grad():
            for p, q in zip(after.parameters(), ours.parameters()):
                p.copy_(q)
        ours_grads = dict(zip(names, (None if q.grad is None else q.grad.clone() for q in ours.parameters())))
        assert_same_gradients(ours_grads, gradients(vae))
        assert_adam_step(after, start, ours_grads, h.vae_lr)


# ---- the cases -----------------------------------------------------------------------------------

CHECKS = {
    "neggrad_plus": check_neggrad_plus,
    "cf_k": lambda prepared, cfg: check_fk(prepared, cfg, "cf_k"),
    "eu_k": lambda prepared, cfg: check_fk(prepared, cfg, "eu_k"),
    "scrub": check_scrub,
    "bad_teacher": check_bad_teacher,
    "laf": check_laf,
    "laf_r": check_laf_r,
}


@pytest.mark.parametrize("method, model", [(m, model) for m in CHECKS for model in MODELS],
                         ids=[f"{m}-{model}" for m in CHECKS for model in MODELS])
def test_update_matches_the_sources_code(request, method, model):
    prepared, cfg = track(request, model)
    CHECKS[method](prepared, cfg)
