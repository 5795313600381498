"""EfficientNetB0: honest weights handling and the smoke run of notebook 05."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest

from common import efficientnet, notebooks, paths, predict, results


def test_missing_local_weights_fall_back_visibly_or_refuse(tmp_path):
    missing = str(tmp_path / "efficientnetb0_notop.h5")
    model, weights = efficientnet.build(3, 32, weights=missing)
    assert weights == f"random-init (pretrained unavailable: no weights file at {missing})"
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


@pytest.mark.slow
def test_05_smoke_run_contract_and_predict(tmp_path, monkeypatch):
    from common import data

    root = data.synth(tmp_path / "synth", classes=4, per_class=10, test_per_class=3, size=40)
    monkeypatch.setenv("VIT_CARS_OUTPUT", str(tmp_path / "out"))
    notebooks.execute(paths.ROOT / "notebooks" / "05_efficientnet.py", "smoke",
                      {"data_dir": str(root)}, progress=False)
    payload = results.read("smoke", "05_efficientnet")
    assert results.problems(payload) == []
    assert [r["name"] for r in payload["runs"]] == ["efficientnetb0-gele", "efficientnetb0-degele"]
    for run in payload["runs"]:
        assert run["weights"].startswith("random-init (pretrained unavailable:")
    pred = predict.Predictor(payload["runs"][-1]["model_dir"])
    rows = pred.predict_files(list(data.load_table(root)["path"][:3]), top=2)
    assert all(1 <= r["class_id"] <= 4 and len(r["top"]) == 2 for r in rows)


@pytest.mark.slow
def test_05_gpu_profile_refuses_random_weights(tmp_path, monkeypatch):
    from papermill.exceptions import PapermillExecutionError

    from common import data

    root = data.synth(tmp_path / "synth", classes=3, per_class=6, size=32)
    monkeypatch.setenv("VIT_CARS_OUTPUT", str(tmp_path / "out"))
    with pytest.raises(PapermillExecutionError, match="WeightsUnavailable"):
        notebooks.execute(paths.ROOT / "notebooks" / "05_efficientnet.py", "gpu",
                          {"data_dir": str(root), "image_size": 32,
                           "weights": str(tmp_path / "absent.h5")}, progress=False)
    assert results.read("gpu", "05_efficientnet") is None
    assert not (tmp_path / "out" / "models" / "gpu" / "05_efficientnet").exists()
