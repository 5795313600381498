"""EfficientNetB0: honest weights handling (its notebook runs in tests/test_notebooks.py)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest

from common.models import efficientnet


def test_missing_local_weights_fall_back_visibly_or_refuse(tmp_path):
    missing = str(tmp_path / "efficientnetb0_notop.h5")
    model, weights = efficientnet.build(3, 32, weights=missing)
    assert weights == {"source": "random-init", "pretrained": False, "requested": missing,
                       "reason": f"pretrained unavailable: no weights file at {missing}"}
    assert model.output_shape == (None, 3)
    with pytest.raises(efficientnet.WeightsUnavailable, match="never trains from random"):
        efficientnet.build(3, 32, weights=missing, allow_fallback=False)


def test_unfreeze_top_keeps_batch_norm_frozen(tmp_path):
    from keras import layers

    model, _ = efficientnet.build(3, 32, weights=str(tmp_path / "none.h5"))
    n = efficientnet.unfreeze_top(model, 20)
    backbone = model.get_layer("efficientnetb0")
    trainable = [layer for layer in backbone.layers if layer.trainable]
    assert 0 < n == len(trainable) <= 20
    assert not any(isinstance(layer, layers.BatchNormalization) for layer in trainable)
