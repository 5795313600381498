"""Random image augmentation as Keras layers: the layers of the from-scratch ViT (inside the
model with ``augment_in_model``, or in the tf.data pipeline), and the registered name of the
project's custom Keras objects.

Augmentation runs on raw 0..255 pixels: Keras' colour layers (RandomContrast) clip to
``value_range=(0, 255)``.
"""

from __future__ import annotations

from keras import layers

PACKAGE = "vit_cars"  # the registered name of this project's custom Keras objects


def augmentation_layers(augmentation: str = "standard") -> list:
    """Random augmentation layers (active in training only)."""
    if augmentation == "none":
        return []
    if augmentation not in ("standard", "strong"):
        raise ValueError(f"unknown augmentation {augmentation!r}")
    out = [
        layers.RandomFlip("horizontal", name="flip"),
        layers.RandomRotation(0.02, name="rotation"),
        layers.RandomZoom(0.2, 0.2, name="zoom"),
    ]
    if augmentation == "strong":
        out += [
            layers.RandomTranslation(0.1, 0.1, name="translation"),
            layers.RandomContrast(0.2, name="contrast"),
        ]
    return out
