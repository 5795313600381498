"""Mixup and CutMix of a training batch, with the labels mixed alike (soft labels).

Mixup (Zhang et al., 2018) blends each image with another image of the batch, with a weight
drawn from Beta(alpha, alpha); CutMix (Yun et al., 2019) pastes a box of another image, whose
share of the area is drawn the same way. The labels become that blend of two one-hot rows.
With both alphas, each batch takes one of the two at random, as DeiT's recipe does (timm's
``Mixup``, switch probability 0.5). The draws are numpy's (:func:`draw`); they are applied
to numpy batches (:func:`mix_batch`, the tensorflow input pipeline) or to torch batches
(:func:`mix_tensor`, the torch one, :mod:`common.training.keras_fit`): the same draws give
the same images.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Mix(NamedTuple):
    """One batch's draw: each image i is mixed with image ``perm[i]``; ``lam`` is the share
    of its own image (and label) it keeps; ``box`` (top, bottom, left, right) is CutMix's
    pasted box, ``None`` for mixup."""

    perm: np.ndarray
    lam: float
    box: tuple[int, int, int, int] | None


def draw(n: int, height: int, width: int, rng: np.random.Generator, *,
         mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0) -> Mix | None:
    """The mixing of a batch of ``n`` images of ``height`` x ``width``; ``None`` when it
    is not mixed (both alphas 0, or a single image)."""
    use = [name for name, a in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha)) if a > 0]
    if not use or n < 2:
        return None
    kind = use[0] if len(use) == 1 else use[int(rng.integers(2))]
    perm = rng.permutation(n)
    if kind == "mixup":
        return Mix(perm, float(rng.beta(mixup_alpha, mixup_alpha)), None)
    lam = float(rng.beta(cutmix_alpha, cutmix_alpha))
    # a box of about (1 - lam) of the area, centred anywhere, clipped to the image; lam is
    # then the share of the image that stayed
    cut_h, cut_w = int(height * np.sqrt(1.0 - lam)), int(width * np.sqrt(1.0 - lam))
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return Mix(perm, 1.0 - (bottom - top) * (right - left) / (height * width),
               (top, bottom, left, right))


def soft_labels(y: np.ndarray, num_classes: int, mix: Mix | None) -> np.ndarray:
    """The labels of a mixed batch: (N, ``num_classes``) float32 rows summing to 1."""
    one_hot = np.eye(num_classes, dtype="float32")[np.asarray(y).reshape(-1).astype("int64")]
    if mix is None:
        return one_hot
    return mix.lam * one_hot + (1.0 - mix.lam) * one_hot[mix.perm]


def mix_batch(x: np.ndarray, y: np.ndarray, num_classes: int, rng: np.random.Generator, *,
              mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray]:
    """Mix a batch of float images ``x`` (N, H, W, C) with integer labels ``y`` (N,).

    Each image is paired with the image at the same place in a random permutation of the
    batch. Returns the mixed images (float32) and the soft labels (N, ``num_classes``),
    float32, each row summing to 1. With both alphas 0 the batch is returned as it is, with
    one-hot labels."""
    x = np.asarray(x, dtype="float32")
    mix = draw(len(x), x.shape[1], x.shape[2], rng, mixup_alpha=mixup_alpha,
               cutmix_alpha=cutmix_alpha)
    labels = soft_labels(y, num_classes, mix)
    if mix is None:
        return x, labels
    if mix.box is None:
        return (mix.lam * x + (1.0 - mix.lam) * x[mix.perm]).astype("float32"), labels
    top, bottom, left, right = mix.box
    mixed = x.copy()
    mixed[:, top:bottom, left:right] = x[mix.perm, top:bottom, left:right]
    return mixed, labels


def mix_tensor(images, y: np.ndarray, num_classes: int, rng: np.random.Generator, *,
               mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0):
    """:func:`mix_batch` for a torch batch of float images (N, C, H, W), channels first,
    which it may overwrite: the same draws from ``rng``, the same mixed images (up to
    rounding), without a trip through numpy. Returns the images (N, C, H, W) and the soft
    labels (numpy)."""
    import torch

    mix = draw(images.shape[0], images.shape[2], images.shape[3], rng,
               mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)
    labels = soft_labels(y, num_classes, mix)
    if mix is None:
        return images, labels
    perm = torch.from_numpy(mix.perm).to(images.device)
    if mix.box is None:  # lam * x + (1 - lam) * x[perm]
        return torch.lerp(images[perm], images, mix.lam), labels
    top, bottom, left, right = mix.box
    images[:, :, top:bottom, left:right] = images[perm, :, top:bottom, left:right]
    return images, labels
