"""Targets p(x) and the contrastive losses of MixUnlearn (METHOD.md "Targets" and "Losses").

    C(pred_mix, p_r, p_f, lam, tau) = sum_k (1 - lam_k) SimLoss(pred_mix_k, p_r_k)
                                      - N * logsumexp_m( lam_m SimLoss(pred_mix_m, p_f_m) / tau )

with SimLoss(a, b) = 1 - cos(a, b) on softmax outputs. Minimising C pulls a prediction towards the
retain target and pushes it away from the forget target; the generator minimises -C (Eq. 3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


# ---- targets ----------------------------------------------------------------------------------
def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Sharpen(p)_c = p_c^(1/T) / sum_k p_k^(1/T), computed in log space so tiny p_c stay finite."""
    return torch.softmax(torch.log(probs.clamp_min(1e-30)) / temperature, dim=1)


def make_targets(original_logits: torch.Tensor, labels: torch.Tensor | None, labelled: torch.Tensor, *,
                 mode: str, use_sharpen: bool, sharpen_T: float) -> torch.Tensor:
    """p(x) for every sample: one-hot labels ("aware"), Sharpen(softmax(f_D(x))) ("agnostic", which reads
    no label: `labels` may be None), or per sample one-hot where a label is visible (`labelled`) and the
    sharpened prediction elsewhere ("semi")."""
    num_classes = original_logits.shape[1]
    probs = torch.softmax(original_logits.float(), dim=1)
    predicted = sharpen(probs, sharpen_T) if use_sharpen else probs
    if mode == "agnostic":
        return predicted
    one_hot = F.one_hot(labels, num_classes).float()
    if mode == "aware":
        return one_hot
    if mode == "semi":
        return torch.where(labelled[:, None], one_hot, predicted)
    raise ValueError(f"unknown target mode {mode!r}")


# ---- losses -----------------------------------------------------------------------------------
def sim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SimLoss(a, b) = 1 - cos(a, b), per row."""
    return 1.0 - F.cosine_similarity(pred, target, dim=1)


def contrastive(pred_retain: torch.Tensor, p_r: torch.Tensor, pred_forget: torch.Tensor, p_f: torch.Tensor,
                weight_retain: torch.Tensor | float, weight_forget: torch.Tensor | float, tau: float, *,
                reduction: str = "sum") -> torch.Tensor:
    """C with separate retain/forget predictions and weights, so Eqs. 3, 5 and 6 share one formula."""
    n = p_f.shape[0]
    pull = (weight_retain * sim_loss(pred_retain, p_r)).sum()
    push = n * torch.logsumexp(weight_forget * sim_loss(pred_forget, p_f) / tau, dim=0)
    loss = pull - push
    return loss / n if reduction == "mean" else loss


def generator_loss(probs_mix: torch.Tensor, p_r: torch.Tensor, p_f: torch.Tensor, lam: torch.Tensor,
                   tau: float, *, reduction: str = "sum") -> torch.Tensor:
    """Eq. 3: L_gen = -C(softmax(f_T(x_mix)), p(x_r), p(x_f), lambda_g, tau_gen)."""
    return -contrastive(probs_mix, p_r, probs_mix, p_f, 1.0 - lam, lam, tau, reduction=reduction)


def mix_loss(probs_mix: torch.Tensor, p_r_paired: torch.Tensor, p_f: torch.Tensor, lam: torch.Tensor,
             tau: float, *, reduction: str = "sum") -> torch.Tensor:
    """Eq. 5: L_mix = C(softmax(f_U(x'_mix)), p(x_r[pi]), p(x_f), lambda_u, tau_mix).

    p_r_paired must be the target of the retain sample actually in each mix (p(x_r[pi(k)])); the
    released code compares with the un-permuted target, which is a bug."""
    return contrastive(probs_mix, p_r_paired, probs_mix, p_f, 1.0 - lam, lam, tau, reduction=reduction)


def real_loss(probs_r: torch.Tensor, p_r: torch.Tensor, probs_f: torch.Tensor, p_f: torch.Tensor,
              tau: float, *, reduction: str = "sum") -> torch.Tensor:
    """Eq. 6: L_real = C on real samples, no lambda weights."""
    return contrastive(probs_r, p_r, probs_f, p_f, 1.0, 1.0, tau, reduction=reduction)


def mask_lambda_loss(forget_share: torch.Tensor, lam: torch.Tensor, *, reduction: str = "sum") -> torch.Tensor:
    """AutoMix's mask regulariser (OpenMixup AutoMixup, `mask_loss`, margin 0): |mean(M_k[:,0]) - lambda_k|,
    so that lambda is also the mix's real ratio. forget_share is M[:,0], [B, H, W]. Reduced over the
    batch like C (a sum by default), so a weight of 1 pulls as hard against L_gen as it does in AutoMix
    against its mean losses."""
    gap = (forget_share.float().mean(dim=(1, 2)) - lam.float()).abs()
    return gap.mean() if reduction == "mean" else gap.sum()
