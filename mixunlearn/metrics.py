"""Evaluation of an unlearned model: accuracies, the SalUn protocol and LAF's membership-inference ASR.

METHOD.md "Evaluation". Every value is a percentage and is judged by its distance to Retrain's:

    metrics = evaluate(model, data, split, mia_samples=5000, seed=0)   # {"ua": ..., "asr": ..., ...}
    gap = avg_gap(metrics, evaluate(refs.retrain, data, split))         # the natural sweep objective

evaluate() runs the model once over the training set and once over the test set (`model_outputs`) and
derives every metric from those softmax outputs, in two parts of very different cost:
- `accuracies`: the accuracies and UA, RA, TA; a few numpy reductions, cheap enough for every epoch.
- `attacks`: MIA-Efficacy (an SVM), ASR (a gradient-boosted classifier) and Deep Unlearn's MIA (a
  logistic regression on the loss, 10-fold), trained afresh on the CPU, their draws seeded by an evaluation
  seed (not the run's) and averaged over several draws whose spread is reported; on a GPU they cost more than an
  unlearning epoch, so a sweep runs them only at the epochs it needs. `du_objective` turns DU's MIA and
  the accuracies into DU's four-term objective once Retrain's accuracies are known.
The pieces they compose (accuracy, mia_efficacy, asr, du_mia, avg_gap) take plain numpy arrays, so each
can be checked on constructed cases. scikit-learn is imported on first use: the `mixsweep` driver never needs it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

try:
    import xgboost
except (ImportError, OSError, ValueError):  # a broken install (no libxgboost/libgomp) fails at import
    xgboost = None

if TYPE_CHECKING:
    from sklearn.base import ClassifierMixin

    from mixunlearn.data import ImageData
    from mixunlearn.tasks import ForgetSplit

# LAF attacks with XGBoost (100 trees); METHOD.md accepts a scikit-learn gradient-boosted substitute,
# and the results must name which one produced the ASR.
ATTACKER: str = "xgboost" if xgboost is not None else "sklearn-hist-gradient-boosting"

# The SalUn protocol's quantities that Avg. Gap averages over.
GAP_METRICS = ("ua", "ra", "ta", "mia_efficacy")
# Deep Unlearn's objective (BASELINES.md "How the sources tune and judge"), four terms and their norm.
DU_METRICS = ("du_retain_gap", "du_forget_gap", "du_test_gap", "du_mia", "du_norm")
# What only the CPU attackers give (avg_gap needs mia_efficacy, du_norm DU's MIA): absent at the epochs
# they do not run.
ATTACK_METRICS = ("mia_efficacy", "asr", "avg_gap", *DU_METRICS, "mia_efficacy_std", "asr_std", "du_mia_std")


# ---- forward passes --------------------------------------------------------------------------

@torch.no_grad()
def predict_logits(model: nn.Module, data: ImageData, images_uint8: torch.Tensor, *,
                   batch_size: int = 1024) -> torch.Tensor:
    """Logits as float32 [n, K], on the images' device; batched, bf16 autocast on CUDA.

    `data` is the ImageData the images come from (its normalize() is applied per batch). The model is
    put in eval mode for the pass and handed back in the mode it came in.
    """
    device = images_uint8.device
    was_training = model.training
    model.eval()
    try:
        logits = []
        for start in range(0, len(images_uint8), batch_size):
            batch = data.normalize(images_uint8[start:start + batch_size])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits.append(model(batch).float())
    finally:
        model.train(was_training)
    if not logits:
        return torch.empty(0, 0, device=device)
    return torch.cat(logits)


def predict_probs(model: nn.Module, data: ImageData, images_uint8: torch.Tensor, *,
                  batch_size: int = 1024) -> torch.Tensor:
    """Softmax outputs, float32 [n, K]: predict_logits' rows through softmax (a row-wise op, so the same
    numbers as a softmax per batch)."""
    logits = predict_logits(model, data, images_uint8, batch_size=batch_size)
    return logits.softmax(dim=1) if logits.numel() else logits


# ---- the whole evaluation -------------------------------------------------------------------

@dataclass(frozen=True)
class Outputs:
    """One forward pass of a model over the training set and over the test set: float32, on the CPU."""
    train_probs: np.ndarray   # [n_train, K] softmax
    test_probs: np.ndarray    # [n_test, K]
    train_logits: np.ndarray | None = None   # [n_train, K]: what the true-class margin reads (oracle_nll)
    test_logits: np.ndarray | None = None


def model_outputs(model: nn.Module, data: ImageData, *, batch_size: int = 1024) -> Outputs:
    """The logits and softmax outputs every metric derives from: the only part of evaluation that runs the model."""
    train = predict_logits(model, data, data.train_images, batch_size=batch_size)
    test = predict_logits(model, data, data.test_images, batch_size=batch_size)
    return Outputs(train.softmax(dim=1).cpu().numpy(), test.softmax(dim=1).cpu().numpy(),
                   train.cpu().numpy(), test.cpu().numpy())


def evaluate(model: nn.Module, data: ImageData, split: ForgetSplit, *, batch_size: int = 1024,
             mia_samples: int = 5000, seed: int = 0, draws: int = 1) -> dict[str, float]:
    """Every METHOD.md metric of `model` on (data, split), in percent: accuracies() and attacks() of one pass.

    Keys: train_r, train_f, test (accuracies), ua, ra, ta, mia_efficacy (SalUn protocol), asr (LAF),
    du_mia (Deep Unlearn's MIA term), plus test_r and test_f when split.forget_classes is non-empty
    (class-level tasks). Train accuracies, confidences and losses use split.train_labels (for the noisy
    task, the corrupted labels f_D learnt).
    `mia_samples` caps each side of the attackers' training sets; `seed` (the evaluation seed) fixes their
    draws, `draws` how many are averaged.
    """
    outputs = model_outputs(model, data, batch_size=batch_size)
    return {**accuracies(outputs, data, split),
            **attacks(outputs, data, split, mia_samples=mia_samples, seed=seed, draws=draws)}


def accuracies(outputs: Outputs, data: ImageData, split: ForgetSplit) -> dict[str, float]:
    """train_r, train_f, test, [test_r, test_f,] ua, ra, ta: the cheap part of evaluate()."""
    train_probs, test_probs = outputs.train_probs, outputs.test_probs
    train_labels = split.train_labels.cpu().numpy()
    test_labels = data.test_labels.cpu().numpy()
    forget = split.forget_idx.cpu().numpy()
    retain = split.retain_idx.cpu().numpy()
    assert len(forget) and len(retain), "a split has a non-empty forget set and retain set"

    metrics = {
        "train_r": accuracy(train_probs[retain], train_labels[retain]),
        "train_f": accuracy(train_probs[forget], train_labels[forget]),
        "test": accuracy(test_probs, test_labels),
    }
    class_level = len(split.forget_classes) > 0
    if class_level:
        forgotten = np.isin(test_labels, split.forget_classes)
        metrics["test_r"] = accuracy(test_probs[~forgotten], test_labels[~forgotten])
        metrics["test_f"] = accuracy(test_probs[forgotten], test_labels[forgotten])

    # SalUn protocol: TA is the retained classes' test accuracy where a class is forgotten.
    metrics["ua"] = 100.0 - metrics["train_f"]
    metrics["ra"] = metrics["train_r"]
    metrics["ta"] = metrics["test_r"] if class_level else metrics["test"]
    return metrics


def attacks(outputs: Outputs, data: ImageData, split: ForgetSplit, *, mia_samples: int = 5000,
            seed: int = 0, draws: int = 1) -> dict[str, float]:
    """mia_efficacy, asr and du_mia: the costly part of evaluate(), numpy and scikit-learn only (no torch, no
    model), so it can run in another thread while the next epoch trains.

    `seed` is the evaluation seed (cfg.eval_seed), never the unlearning run's: the attackers' draws depend on
    it and on the model's outputs only, so one model always gets one number. Each value is the mean over
    `draws` draws (seeds `draw_seeds(seed, draws)`), and `<name>_std` is their sample std (NaN for one
    draw): the attacker's own spread, which a table should not read as the method's."""
    per_draw = [one_draw(outputs, data, split, mia_samples=mia_samples, seed=s) for s in draw_seeds(seed, draws)]
    metrics: dict[str, float] = {}
    for key in ATTACK_DRAWN:
        values = np.array([d[key] for d in per_draw], np.float64)
        metrics[key] = float(np.mean(values))
        metrics[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return metrics


# What attacks() averages over its draws; each also reported as <name>_std.
ATTACK_DRAWN = ("mia_efficacy", "asr", "du_mia")
DRAW_STRIDE = 1000   # draw d of evaluation seed s is seed s + 1000 d: draw 0 is the seed itself


def draw_seeds(seed: int, draws: int) -> list[int]:
    return [seed + DRAW_STRIDE * d for d in range(draws)]


def one_draw(outputs: Outputs, data: ImageData, split: ForgetSplit, *, mia_samples: int, seed: int) -> dict[str, float]:
    """One draw of the three attackers under `seed`."""
    train_probs, test_probs = outputs.train_probs, outputs.test_probs
    train_labels = split.train_labels.cpu().numpy()
    test_labels = data.test_labels.cpu().numpy()
    forget = split.forget_idx.cpu().numpy()
    retain = split.retain_idx.cpu().numpy()
    train_conf = true_class_confidence(train_probs, train_labels)
    test_conf = true_class_confidence(test_probs, test_labels)
    metrics = {"mia_efficacy": mia_efficacy(train_conf[retain], test_conf, train_conf[forget], seed,
                                            max_samples=mia_samples)}

    # LAF's ASR: the test set is held shuffled, so its first n samples are a fair non-member draw and
    # the next m are unseen by the attacker.
    n = min(len(forget), mia_samples, len(test_probs) // 2)
    m = min(len(forget), len(test_probs) - n)
    metrics["asr"] = asr(train_probs[retain], test_probs[:n], train_probs[forget], test_probs[n:n + m], seed)
    # DU's MIA term (its Retrain-relative terms need Retrain's accuracies: `du_objective`).
    metrics["du_mia"] = du_mia_term(du_mia(cross_entropy(train_probs[forget], train_labels[forget]),
                                           cross_entropy(test_probs, test_labels), seed, max_samples=mia_samples))
    return metrics


def avg_gap(metrics: dict[str, float], retrain_metrics: dict[str, float]) -> float:
    """Avg. Gap: mean |metric - Retrain's metric| over UA, RA, TA and MIA-Efficacy; lower is better."""
    return float(np.mean([abs(metrics[k] - retrain_metrics[k]) for k in GAP_METRICS]))


def du_objective(metrics: dict[str, float], retrain_metrics: dict[str, float]) -> dict[str, float]:
    """Deep Unlearn's four minimised terms and the norm its best-trial rule takes, in percentage points
    (DU's fractions × 100, like every metric here; its norm is du_norm / 100):

    - du_retain_gap, du_forget_gap, du_test_gap = |Acc − Retrain's Acc| / 3 on D_r, D_f and the test set
      (train_r, train_f, test; DU's Acc_val is its held-out set, here the test set);
    - du_mia = 100·(1 − indiscernibility), from `metrics["du_mia"]` (attacks());
    - du_norm = the Euclidean norm of the four: one number a single-objective sweep can minimise.

    With no `retrain_metrics` (while Retrain itself is evaluated) its gaps are 0 and du_norm = du_mia.
    DU's MIA term is absolute, not relative to Retrain: DU forgets random samples, where Retrain's is near
    0. On a class-level task Retrain's own is high (it never predicts the class, so D_f's losses stand
    out against the test set's; 90 on the "tiny" data set), and avg_gap is the fairer objective there.
    """
    gaps = {f"du_{term}_gap": (abs(metrics[key] - retrain_metrics[key]) / 3.0 if retrain_metrics else 0.0)
            for term, key in (("retain", "train_r"), ("forget", "train_f"), ("test", "test"))}
    terms = [*gaps.values(), metrics["du_mia"]]
    return {**gaps, "du_mia": metrics["du_mia"], "du_norm": float(np.sqrt(np.sum(np.square(terms))))}


# ---- the parts ------------------------------------------------------------------------------

def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Percent of rows whose arg-max is the label; NaN for an empty set (e.g. a class absent from a subset)."""
    if len(labels) == 0:
        return float("nan")
    return 100.0 * float(np.mean(probs.argmax(axis=1) == labels))


def true_class_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each sample's predicted probability of its own label: the SalUn MIA feature."""
    return probs[np.arange(len(labels)), labels]


def mia_efficacy(conf_members: np.ndarray, conf_nonmembers: np.ndarray, conf_forget: np.ndarray, seed: int,
                 *, max_samples: int = 5000) -> float:
    """SalUn's MIA-Efficacy: percent of the forget set that an SVM judges a non-member.

    The SVM (SVC(C=3, gamma="auto", kernel="rbf"), SalUn's settings) learns true-class confidence on
    n members (retain samples) vs n non-members (test samples), n = min of both sizes and max_samples,
    each side drawn at random with numpy's Generator(seed). Higher means D_f looks less trained-on.
    """
    n = min(len(conf_members), len(conf_nonmembers), max_samples)
    if n == 0 or len(conf_forget) == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    members = conf_members[rng.choice(len(conf_members), n, replace=False)]
    nonmembers = conf_nonmembers[rng.choice(len(conf_nonmembers), n, replace=False)]
    features = np.concatenate([members, nonmembers]).reshape(-1, 1)
    is_member = np.concatenate([np.ones(n), np.zeros(n)])
    from sklearn.svm import SVC   # here, not at the top: see the module docstring

    svm = SVC(C=3, gamma="auto", kernel="rbf").fit(features, is_member)
    return 100.0 * float(np.mean(svm.predict(np.reshape(conf_forget, (-1, 1))) == 0))


def asr(probs_members: np.ndarray, probs_nonmembers: np.ndarray, probs_forget: np.ndarray,
        probs_heldout: np.ndarray, seed: int) -> float:
    """LAF's attack success rate: accuracy (percent) of a membership attacker on D_f vs unseen test data.

    The attacker (ATTACKER) reads the softmax vector sorted descending. It trains on all of
    `probs_nonmembers` against as many rows drawn at random from `probs_members` (the retain set), and
    is scored on m = min(|forget|, |heldout|) forget rows (members; drawn at random when there are more)
    plus the first m held-out rows (non-members). 50 is chance: the attacker cannot tell D_f from
    data the model never saw.
    """
    n = min(len(probs_members), len(probs_nonmembers))
    m = min(len(probs_forget), len(probs_heldout))
    if n == 0 or m == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    members = probs_members[rng.choice(len(probs_members), n, replace=False)]
    forget = probs_forget[rng.choice(len(probs_forget), m, replace=False)]
    train_x = sorted_descending(np.concatenate([members, probs_nonmembers[:n]]))
    train_y = np.concatenate([np.ones(n), np.zeros(n)]).astype(np.int64)
    eval_x = sorted_descending(np.concatenate([forget, probs_heldout[:m]]))
    eval_y = np.concatenate([np.ones(m), np.zeros(m)]).astype(np.int64)
    attacker = make_attacker(seed).fit(train_x, train_y)
    return 100.0 * float(np.mean(attacker.predict(eval_x) == eval_y))


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each sample's cross-entropy loss −log p(label), in float64; p is floored at 1e-12 (a float32 softmax
    can round to 0), so a loss is at most 27.6."""
    return -np.log(np.maximum(true_class_confidence(probs, labels).astype(np.float64), 1e-12))


def du_mia(forget_losses: np.ndarray, test_losses: np.ndarray, seed: int, *, max_samples: int = 5000,
           folds: int = 10) -> float:
    """Deep Unlearn's MIA: the 10-fold cross-validated accuracy (percent; 50 = the forget set cannot be
    told from unseen data) of a logistic regression on per-sample loss, forget set vs test set.

    Balanced as DU balances it: n = min(|forget|, |test|, max_samples) losses from each side, drawn at
    random with numpy's Generator(seed); the folds are stratified and shuffled with the same seed.
    NaN with fewer than 2 samples a side (no fold could hold both classes).
    """
    n = min(len(forget_losses), len(test_losses), max_samples)
    if n < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    forget = forget_losses[rng.choice(len(forget_losses), n, replace=False)]
    test = test_losses[rng.choice(len(test_losses), n, replace=False)]
    features = np.concatenate([forget, test]).reshape(-1, 1)
    is_forget = np.concatenate([np.ones(n), np.zeros(n)]).astype(np.int64)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    splits = StratifiedKFold(n_splits=min(folds, n), shuffle=True, random_state=seed)
    return 100.0 * float(np.mean(cross_val_score(LogisticRegression(), features, is_forget, cv=splits,
                                                 scoring="accuracy")))


def du_mia_term(mia: float) -> float:
    """DU's fourth term, 1 − indiscernibility with indiscernibility = 1 − |MIA − 0.5| / 0.5, in percent:
    0 when the attack is at chance, 100 when it is always right (or always wrong)."""
    return 100.0 * abs(mia / 100.0 - 0.5) / 0.5


def sorted_descending(probs: np.ndarray) -> np.ndarray:
    """The class-order-free attack feature: each softmax vector's probabilities, largest first."""
    return -np.sort(-probs, axis=1)


def make_attacker(seed: int) -> ClassifierMixin:
    """A fresh, seeded gradient-boosted classifier of the kind ATTACKER names."""
    if xgboost is not None:
        return xgboost.XGBClassifier(n_estimators=100, random_state=seed)
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=100, random_state=seed)
