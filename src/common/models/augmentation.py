"""Random image augmentation as Keras layers: the layers of the from-scratch ViT (inside the
model with ``augment_in_model``, or in the tf.data pipeline), and the registered name of the
project's custom Keras objects.

Augmentation runs on raw 0..255 pixels: Keras' colour layers (RandomContrast) clip to
``value_range=(0, 255)``. Augmentation always computes in float32, whatever Keras'
precision policy: under ``mixed_bfloat16`` the geometric layers would cast the images to
bf16, and TensorFlow has no bf16 GPU kernel for the image warp (``ImageProjectiveTransformV3``
is registered on GPU for half, float and double only), so those layers would run on the host
every step. In float32 they stay on the accelerator; the next layer (normalisation) casts
to the policy's compute dtype.
"""

from __future__ import annotations

from keras import layers

PACKAGE = "vit_cars"  # the registered name of this project's custom Keras objects
AUGMENT_DTYPE = "float32"  # the augmentation layers' policy, whatever the global one


def augmentation_layers(augmentation: str = "standard") -> list:
    """Random augmentation layers (active in training only), in float32."""
    if augmentation == "none":
        return []
    if augmentation not in ("standard", "strong"):
        raise ValueError(f"unknown augmentation {augmentation!r}")
    out = [
        layers.RandomFlip("horizontal", name="flip", dtype=AUGMENT_DTYPE),
        layers.RandomRotation(0.02, name="rotation", dtype=AUGMENT_DTYPE),
        layers.RandomZoom(0.2, 0.2, name="zoom", dtype=AUGMENT_DTYPE),
    ]
    if augmentation == "strong":
        out += [
            layers.RandomTranslation(0.1, 0.1, name="translation", dtype=AUGMENT_DTYPE),
            layers.RandomContrast(0.2, name="contrast", dtype=AUGMENT_DTYPE),
        ]
    return out
