"""The contrastive loss C and its three uses, checked against METHOD.md's formula written out longhand."""
import math

import torch
import torch.nn.functional as F

from mixunlearn.losses import (contrastive, generator_loss, make_targets, mix_loss, real_loss, sharpen,
                               sim_loss)


def longhand_c(pred, p_r, p_f, lam, tau):
    """C = sum_k (1-lam_k) SimLoss(pred_k, p_r_k) - N log sum_m exp(lam_m SimLoss(pred_m, p_f_m) / tau)."""
    n = len(pred)
    def simloss(a, b):
        dot = sum(x * y for x, y in zip(a, b))
        return 1 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))
    pull = sum((1 - lam[k]) * simloss(pred[k], p_r[k]) for k in range(n))
    push = n * math.log(sum(math.exp(lam[m] * simloss(pred[m], p_f[m]) / tau) for m in range(n)))
    return pull - push


def random_probs(n, k, generator):
    return torch.softmax(torch.randn(n, k, generator=generator, dtype=torch.float64) * 3, dim=1)


def test_contrastive_matches_the_formula_on_random_inputs():
    g = torch.Generator().manual_seed(0)
    for n, tau in [(1, 1.0), (7, 20.0), (32, 3.5)]:
        pred, p_r, p_f = (random_probs(n, 10, g) for _ in range(3))
        lam = torch.rand(n, generator=g, dtype=torch.float64)
        expected = longhand_c(pred.tolist(), p_r.tolist(), p_f.tolist(), lam.tolist(), tau)
        assert math.isclose(mix_loss(pred, p_r, p_f, lam, tau).item(), expected, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(generator_loss(pred, p_r, p_f, lam, tau).item(), -expected, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(mix_loss(pred, p_r, p_f, lam, tau, reduction="mean").item(), expected / n,
                            rel_tol=1e-9, abs_tol=1e-9)


def test_real_loss_has_no_lambda_weights():
    g = torch.Generator().manual_seed(1)
    probs_r, p_r, probs_f, p_f = (random_probs(6, 4, g) for _ in range(4))
    tau = 5.0
    expected = sim_loss(probs_r, p_r).sum() - 6 * torch.logsumexp(sim_loss(probs_f, p_f) / tau, dim=0)
    torch.testing.assert_close(real_loss(probs_r, p_r, probs_f, p_f, tau), expected)
    torch.testing.assert_close(contrastive(probs_r, p_r, probs_f, p_f, 1.0, 1.0, tau), expected)


def test_minimising_c_pulls_towards_retain_and_pushes_from_forget():
    p_r = F.one_hot(torch.tensor([1, 1]), 3).float()
    p_f = F.one_hot(torch.tensor([0, 0]), 3).float()
    lam = torch.tensor([0.5, 0.5])
    near_retain = torch.tensor([[0.05, 0.9, 0.05]] * 2)
    near_forget = torch.tensor([[0.9, 0.05, 0.05]] * 2)
    assert mix_loss(near_retain, p_r, p_f, lam, 1.0) < mix_loss(near_forget, p_r, p_f, lam, 1.0)


def test_sharpen_matches_the_definition_and_sharpens():
    p = torch.tensor([[0.5, 0.3, 0.2]])
    expected = p ** (1 / 0.3) / (p ** (1 / 0.3)).sum()
    torch.testing.assert_close(sharpen(p, 0.3), expected)
    assert sharpen(p, 0.3).max() > p.max()
    torch.testing.assert_close(sharpen(p, 1.0), p)


def test_targets_aware_agnostic_semi():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    labels = torch.tensor([1, 2])                      # sample 0: f_D predicts 0 but its label is 1
    labelled = torch.tensor([True, False])
    aware = make_targets(logits, labels, labelled, mode="aware", use_sharpen=True, sharpen_T=0.3)
    torch.testing.assert_close(aware, F.one_hot(labels, 3).float())
    agnostic = make_targets(logits, labels, labelled, mode="agnostic", use_sharpen=True, sharpen_T=0.3)
    torch.testing.assert_close(agnostic, sharpen(torch.softmax(logits, 1), 0.3))
    plain = make_targets(logits, labels, labelled, mode="agnostic", use_sharpen=False, sharpen_T=0.3)
    torch.testing.assert_close(plain, torch.softmax(logits, 1))
    semi = make_targets(logits, labels, labelled, mode="semi", use_sharpen=True, sharpen_T=0.3)
    torch.testing.assert_close(semi[0], aware[0])       # labelled: one-hot of the label
    torch.testing.assert_close(semi[1], agnostic[1])    # unlabelled: the sharpened prediction
