"""Smoke runs of the two fine-tuning notebooks through papermill, on generated data.

The real loading code runs: from a tiny ViT written by save_pretrained into a temporary
folder, and from a hub id with the hub unreachable (a closed loopback port, an empty cache),
where the smoke profile falls back to a random ViT and the gpu profile refuses to train.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common import notebooks, paths, predict, results

pytestmark = pytest.mark.slow

HUB_ID = "google/vit-base-patch16-224-in21k"
MODEL_FILES = ("model.safetensors", "config.json", "preprocessor_config.json", "labels.json",
               "preprocess.json")


@pytest.fixture(scope="module")
def smoke_env(tmp_path_factory):
    """Generated data, a tiny save_pretrained checkpoint and an output folder."""
    from transformers import ViTConfig, ViTForImageClassification

    from common import data, pretrained

    base = tmp_path_factory.mktemp("finetune")
    root = data.synth(base / "synth", classes=12, per_class=16, test_per_class=4, size=48)
    checkpoint = base / "tiny-vit"
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, num_labels=4)
    ViTForImageClassification(config).save_pretrained(checkpoint)
    pretrained.simple_processor(32).save_pretrained(checkpoint)
    return {"data": root, "checkpoint": checkpoint, "out": base / "out",
            "cache": base / "cache", "hf_home": base / "hf-home"}


@pytest.fixture
def no_hub(smoke_env, monkeypatch):
    """The notebook kernels see an unreachable hub and an empty Hugging Face cache."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(smoke_env["hf_home"]))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


def _run(smoke_env, monkeypatch, name, profile="smoke", **overrides):
    monkeypatch.setenv("VIT_CARS_OUTPUT", str(smoke_env["out"]))
    monkeypatch.setenv("VIT_CARS_CACHE", str(smoke_env["cache"]))
    return notebooks.execute(paths.ROOT / "notebooks" / f"{name}.py", profile,
                             {"data_dir": str(smoke_env["data"]), **overrides}, progress=False)


def _check(payload, name, n_classes, runs):
    assert results.problems(payload) == []
    assert payload["notebook"] == name and payload["profile"] == "smoke"
    assert payload["dataset"]["n_classes"] == n_classes
    assert [r["name"] for r in payload["runs"]] == runs
    for run in payload["runs"]:
        assert run["train_images_per_second"] > 0 and run["train_seconds"] > 0
        assert len(run["history"]["loss"]) == run["params"]["epochs"]
        for f in MODEL_FILES:
            assert (paths.models_dir("smoke", name) / run["name"] / f).is_file(), f
    for suffix in ("_predictions.png", "_attention.png", "_curves.png"):
        assert any(f.endswith(suffix) for f in payload["figures"]), suffix


def _predict(smoke_env, model_dir, class_ids, tmp_path, capsys):
    """common.predict loads the saved Hugging Face folder and names official classes."""
    from common import data

    table = data.select_classes(data.load_table(smoke_env["data"]), class_ids=class_ids)
    pick = table[table["split"] == "test"].groupby("class_id").head(1)
    out = tmp_path / "pred.csv"
    assert predict.main([model_dir, *pick["path"], "--csv", str(out), "--top", "3"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("| top:") == len(pick)
    import pandas as pd

    rows = pd.read_csv(out)
    assert len(rows) == len(pick) and set(rows["class_id"]) <= set(class_ids)
    assert rows["probability"].between(0, 1).all()
    labels = json.loads((Path(model_dir) / "labels.json").read_text())
    assert [v["class_id"] for v in labels.values()] == sorted(class_ids)


def test_03_from_a_local_checkpoint(smoke_env, monkeypatch, no_hub, tmp_path, capsys):
    _run(smoke_env, monkeypatch, "03_vit_finetune", checkpoint=str(smoke_env["checkpoint"]))
    payload = results.read("smoke", "03_vit_finetune")
    _check(payload, "03_vit_finetune", 12, ["balanced", "cap64"])
    assert [r["weights"] for r in payload["runs"]] == [str(smoke_env["checkpoint"])] * 2
    assert payload["dataset"]["split_sizes"]["test"] == 48  # the generated official test
    balanced, capped = payload["runs"]
    assert balanced["params"]["balance"] is True and capped["params"]["cap"] == 64
    preprocess = json.loads((Path(balanced["model_dir"]) / "preprocess.json").read_text())
    assert preprocess["framework"] == "transformers" and preprocess["image_size"] == 32
    _predict(smoke_env, balanced["model_dir"], list(range(1, 13)), tmp_path, capsys)


def test_04_falls_back_without_the_hub(smoke_env, monkeypatch, no_hub, tmp_path, capsys):
    executed = _run(smoke_env, monkeypatch, "04_vit_finetune_10classes", checkpoint=HUB_ID)
    payload = results.read("smoke", "04_vit_finetune_10classes")
    _check(payload, "04_vit_finetune_10classes", 5, ["balanced"])
    assert payload["dataset"]["class_ids"] == [2, 3, 5, 7, 11]
    assert any(f.endswith("_confusion.png") for f in payload["figures"])
    weights = payload["runs"][0]["weights"]
    assert weights.startswith("random-init (pretrained unavailable: hub unreachable")
    assert "not in the local cache" in weights
    assert "Avertissement : poids pré-entraînés indisponibles" in executed.read_text()
    _predict(smoke_env, payload["runs"][0]["model_dir"], [2, 3, 5, 7, 11], tmp_path, capsys)


def test_gpu_profile_stops_without_pretrained_weights(smoke_env, monkeypatch, no_hub):
    with pytest.raises(Exception) as err:
        _run(smoke_env, monkeypatch, "03_vit_finetune", profile="gpu", checkpoint=HUB_ID)
    assert type(err.value).__name__ == "PapermillExecutionError"
    message = str(err.value)
    assert "PretrainedUnavailable" in message and "never trains from scratch" in message
    assert HUB_ID in message and "HF_HOME" in message
    assert results.read("gpu", "03_vit_finetune") is None
    assert not paths.models_dir("gpu", "03_vit_finetune").exists()
