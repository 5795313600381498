"""EfficientNetB0 for transfer learning in Keras, as the 2022 study (keras.io "Image
classification via fine-tuning with EfficientNet"), with an honest weights fallback: the
model only; its two training stages are :mod:`common.training.efficientnet_stages`.

Stage 1: the ImageNet backbone frozen, the original's augmentation and head
(global average pooling, batch normalisation, dropout 0.2, dense). Stage 2 (ours): the top
blocks unfrozen with a small learning rate, batch-normalisation layers kept frozen. The Keras
model takes pixels 0..255 (its own rescaling is inside).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
from keras import layers

from common.models import weight_files
from common.models.augmentation import augmentation_layers
from common.models.origin import weights_info

IMAGENET = "imagenet"


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be loaded; the message says why and how to fix it."""


def augmentation() -> keras.Sequential:
    """The 2022 notebook's augmentation (keras.io EfficientNet example; the level
    "efficientnet" of :func:`common.models.augmentation.augmentation_layers`), computed in
    float32 whatever the precision policy."""
    return keras.Sequential(augmentation_layers("efficientnet"), name="augmentation")


def _backbone(image_size: int, weights: str | None):
    return keras.applications.EfficientNetB0(include_top=False, weights=weights,
                                             input_shape=(image_size, image_size, 3))


def load_backbone(image_size: int, weights: str = IMAGENET, allow_fallback: bool = True,
                  stand_in: bool = False):
    """EfficientNetB0 without its top, and the record of the weights it holds
    (:func:`common.weights_info`).

    ``weights``: ``"imagenet"`` (the file ``make weights`` put in ``weights/keras/``, else
    Keras' weight store, cached in ``~/.keras/models``) or the path of a local weights file.
    When they cannot be loaded: with ``stand_in`` (a dry run), a random stand-in file of the
    same format is loaded instead (:func:`make_stand_in`); with ``allow_fallback``, a randomly
    initialised backbone, and the record says so; otherwise :class:`WeightsUnavailable` is
    raised at once.
    """
    source = weights
    if weights == IMAGENET and weight_files.keras_file() is not None:
        source = str(weight_files.keras_file())
    if source != IMAGENET and not os.path.isfile(source):
        reason = f"no weights file at {source}"
    else:
        try:
            return _backbone(image_size, source), weights_info(
                "imagenet (keras.applications.EfficientNetB0)" if source == IMAGENET
                else f"local weights {source}", pretrained=True)
        except Exception as exc:  # download errors come as several types
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    if stand_in:
        path = make_stand_in()
        return _backbone(image_size, str(path)), weights_info(
            "stand-in", pretrained=False, requested=str(weights), file=str(path),
            reason=f"dry run: {reason}")
    if not allow_fallback:
        raise WeightsUnavailable(
            f"cannot load the EfficientNetB0 weights '{weights}' ({reason}). Fix: run `make "
            "weights` on a machine with network access and copy its weights/ folder here, or "
            "download efficientnetb0_notop.h5 elsewhere and set the `weights` parameter to "
            "its path. The gpu profile never trains from random weights.")
    return _backbone(image_size, None), weights_info(
        "random-init", pretrained=False, requested=str(weights),
        reason=f"pretrained unavailable: {reason}")


def make_stand_in() -> Path:
    """Random EfficientNetB0 weights (no top) in an HDF5 file that Keras loads as it loads
    the ImageNet file (``weights=``: the legacy HDF5 format, written by Keras' public
    ``save``), for a dry run; made once in ``weights/stand-ins/``, then reused."""
    path = weight_files.stand_in_path(weight_files.EFFICIENTNET_FILE)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".partial-" + path.name)
        keras.applications.EfficientNetB0(include_top=False, weights=None).save(tmp)
        tmp.rename(path)
    return path


def build(num_classes: int, image_size: int, weights: str = IMAGENET,
          allow_fallback: bool = True, dropout: float = 0.2, stand_in: bool = False,
          augment_in_model: bool = True):
    """The 2022 model: frozen backbone + head, with the 2022 augmentation inside it unless
    ``augment_in_model`` is false (the input pipeline then augments: Keras will not compile
    a model with those layers). Returns (model, weights record)."""
    backbone, described = load_backbone(image_size, weights, allow_fallback, stand_in)
    backbone.trainable = False
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = augmentation()(inputs) if augment_in_model else inputs
    x = backbone(x, training=False)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.Dropout(dropout, name="top_dropout")(x)
    outputs = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name="efficientnetb0"), described


def unfreeze_top(model: keras.Model, n_layers: int = 20) -> int:
    """Make the last ``n_layers`` layers of the backbone trainable, batch norm excepted.

    Returns how many layers became trainable.
    """
    backbone = next(layer for layer in model.layers if layer.name.startswith("efficientnet"))
    backbone.trainable = True
    count = 0
    for i, layer in enumerate(backbone.layers):
        top = i >= len(backbone.layers) - n_layers
        layer.trainable = top and not isinstance(layer, layers.BatchNormalization)
        count += int(layer.trainable)
    return count
