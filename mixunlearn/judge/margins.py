"""The true-class margin, the one statistic every per-example metric reads (EVALUATION.md).

    phi = true_class_margin(logits, labels)            # float64 [n]; logits [n, K] or [models, n, K]
    phi = model_margins(model, data, split)            # float32 [n_train + n_test], training points first

phi(x) = z_y(x) - logsumexp_{j != y} z_j(x) equals log(p_y / (1 - p_y)), computed in logit space: it never
saturates, where the same number from clipped float32 probabilities stops near ±13.8 (data-unlearning-bench's
`get_margin` does the same). Stored per model as float32 over every training and test point: a model is run
once and every metric reuses the vector.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.special import logsumexp

if TYPE_CHECKING:
    import torch

    from mixunlearn.data import ImageData
    from mixunlearn.tasks import ForgetSplit


def true_class_margin(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """phi per row of `logits` ([..., n, K], any float dtype) for int labels [n], in float64."""
    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    own = np.take_along_axis(z, np.broadcast_to(labels[:, None], z.shape[:-1] + (1,)), axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, np.broadcast_to(labels[:, None], z.shape[:-1] + (1,)), -np.inf, axis=-1)
    return own - logsumexp(others, axis=-1)


def model_logits(model: torch.nn.Module, data: ImageData, images_uint8: torch.Tensor, *,
                 batch_size: int = 1024) -> np.ndarray:
    """float32 logits [n, K] of `model` in eval mode, without augmentation; float32 on every device (a
    margin is a difference of logits, which bf16 rounds away)."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = [model(data.normalize(images_uint8[start:start + batch_size])).float().cpu()
                   for start in range(0, len(images_uint8), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, data.num_classes), np.float32)


def model_margins(model: torch.nn.Module, data: ImageData, split: ForgetSplit, *,
                  batch_size: int = 1024) -> np.ndarray:
    """phi over every training point (labels: split.train_labels, what f_D learnt) then every test point,
    float32 [n_train + n_test]."""
    train = true_class_margin(model_logits(model, data, data.train_images, batch_size=batch_size),
                              split.train_labels.cpu().numpy())
    test = true_class_margin(model_logits(model, data, data.test_images, batch_size=batch_size),
                             data.test_labels.cpu().numpy())
    return np.concatenate([train, test]).astype(np.float32)
