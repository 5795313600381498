"""Mixup and CutMix of a training batch, with the labels mixed alike (soft labels).

Mixup (Zhang et al., 2018) blends each image with another image of the batch, with a weight
drawn from Beta(alpha, alpha); CutMix (Yun et al., 2019) pastes a box of another image, whose
share of the area is drawn the same way. The labels become that blend of two one-hot rows.
With both alphas, each batch takes one of the two at random, as DeiT's recipe does (timm's
``Mixup``, switch probability 0.5). Numpy only: the same code serves the tensorflow input
pipeline and the torch one (:mod:`common.training.keras_fit`).
"""

from __future__ import annotations

import numpy as np


def mix_batch(x: np.ndarray, y: np.ndarray, num_classes: int, rng: np.random.Generator, *,
              mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray]:
    """Mix a batch of float images ``x`` (N, H, W, C) with integer labels ``y`` (N,).

    Each image is paired with the image at the same place in a random permutation of the
    batch. Returns the mixed images (float32) and the soft labels (N, ``num_classes``),
    float32, each row summing to 1. With both alphas 0 the batch is returned as it is, with
    one-hot labels."""
    x = np.asarray(x, dtype="float32")
    y = np.asarray(y).reshape(-1).astype("int64")
    one_hot = np.eye(num_classes, dtype="float32")[y]
    use = [name for name, a in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha)) if a > 0]
    if not use or len(x) < 2:
        return x, one_hot
    kind = use[0] if len(use) == 1 else use[int(rng.integers(2))]
    perm = rng.permutation(len(x))
    if kind == "mixup":
        lam = float(rng.beta(mixup_alpha, mixup_alpha))
        mixed = lam * x + (1.0 - lam) * x[perm]
    else:
        lam = float(rng.beta(cutmix_alpha, cutmix_alpha))
        height, width = x.shape[1:3]
        # a box of about (1 - lam) of the area, centred anywhere, clipped to the image;
        # lam is then the share of the image that stayed
        cut_h, cut_w = int(height * np.sqrt(1.0 - lam)), int(width * np.sqrt(1.0 - lam))
        cy, cx = int(rng.integers(height)), int(rng.integers(width))
        top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        mixed = x.copy()
        mixed[:, top:bottom, left:right] = x[perm, top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    return mixed.astype("float32"), (lam * one_hot + (1.0 - lam) * one_hot[perm])
