"""Random image augmentation as Keras layers (inside the from-scratch ViT with
``augment_in_model``, or in the tf.data pipeline), and the registered name of the project's
custom Keras objects. The same transformations on torch, for training batches, are
:mod:`common.training.batch_augmentation`'s.

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
LEVELS = ("standard", "strong", "heavy", "efficientnet")  # besides "none"


def check_level(augmentation: str) -> None:
    """Refuse (ValueError, one line) an augmentation level that is not one of :data:`LEVELS`
    (its callers handle "none", no augmentation, first)."""
    if augmentation not in LEVELS:
        raise ValueError(f"unknown augmentation {augmentation!r}: use one of "
                         f"{', '.join(('none',) + LEVELS)}")


def augmentation_layers(augmentation: str = "standard") -> list:
    """Random augmentation layers (active in training only), in float32. "standard": flip,
    rotation, zoom; "strong" adds translation and contrast; "heavy" rotates, zooms and
    translates further (zoom in up to 1.67), jitters contrast and saturation, and blacks out
    a box in one image in four; "efficientnet", notebook 05's (2022): rotation up to 0.15
    turn, translation up to 10 %, horizontal and vertical flips, contrast 0.9 to 1.1."""
    if augmentation == "none":
        return []
    check_level(augmentation)
    f = AUGMENT_DTYPE
    if augmentation == "efficientnet":  # the 2022 notebook's (keras.io EfficientNet example)
        return [layers.RandomRotation(0.15, dtype=f), layers.RandomTranslation(0.1, 0.1, dtype=f),
                layers.RandomFlip(dtype=f), layers.RandomContrast(0.1, dtype=f)]
    if augmentation == "heavy":
        return [
            layers.RandomFlip("horizontal", name="flip", dtype=f),
            layers.RandomRotation(0.04, name="rotation", dtype=f),
            layers.RandomZoom((-0.4, 0.2), (-0.4, 0.2), name="zoom", dtype=f),
            layers.RandomTranslation(0.15, 0.15, name="translation", dtype=f),
            # contrast and saturation 0.7 to 1.3: Keras' saturation factor s multiplies
            # saturation by s / (1 - s)
            layers.RandomColorJitter(contrast_factor=0.3, saturation_factor=(0.7 / 1.7, 1.3 / 2.3),
                                     name="colour", dtype=f),
            layers.RandomErasing(0.25, scale=(0.02, 0.25), fill_value=0.0, name="erasing",
                                 dtype=f),
        ]
    out = [
        layers.RandomFlip("horizontal", name="flip", dtype=f),
        layers.RandomRotation(0.02, name="rotation", dtype=f),
        layers.RandomZoom(0.2, 0.2, name="zoom", dtype=f),
    ]
    if augmentation == "strong":
        out += [
            layers.RandomTranslation(0.1, 0.1, name="translation", dtype=f),
            layers.RandomContrast(0.2, name="contrast", dtype=f),
        ]
    return out
