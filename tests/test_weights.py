"""Pretrained weights on disk: `make weights` without network, and the lookup order
(weights/ first, then the hub) with stand-in files."""

from __future__ import annotations

import os
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from common.core import paths  # noqa: E402
from common.models import efficientnet  # noqa: E402
from common.models import hf_classifier as hf_weights  # noqa: E402
from common.models import weight_files as weights  # noqa: E402

CHECKPOINT = "google/vit-base-patch16-224-in21k"
TINY = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 64}


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_CARS_WEIGHTS", str(tmp_path / "weights"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hf_weights._locate_on_hub.cache_clear()
    yield tmp_path / "weights"
    hf_weights._locate_on_hub.cache_clear()


def test_make_weights_without_network_fails_at_once_with_the_advice(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(paths.ROOT / "src"),
           "HF_ENDPOINT": "http://127.0.0.1:9", "VIT_CARS_WEIGHTS": str(tmp_path / "w")}
    env.pop("HF_HUB_OFFLINE", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "common", "weights", "download"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert time.perf_counter() - start < 60
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: cannot reach the Hugging Face hub")
    assert "run `make weights` on a machine with network access" in proc.stderr
    assert not (tmp_path / "w").exists()


def test_hub_checkpoint_is_taken_from_weights_first(weights_dir):
    from transformers import ViTConfig, ViTForImageClassification

    labels = {0: (1, "a"), 1: (2, "b")}
    # nothing in weights/ and no hub: refused (the gpu profile) with the hub's reason
    with pytest.raises(hf_weights.PretrainedUnavailable, match="hub unreachable"):
        hf_weights.load_classifier(CHECKPOINT, labels, profile="gpu")
    folder = weights_dir / "huggingface" / "google--vit-base-patch16-224-in21k"
    ViTForImageClassification(ViTConfig(**TINY)).save_pretrained(folder)
    hf_weights.simple_processor(32).save_pretrained(folder)
    assert weights.hf_folder(CHECKPOINT) == folder
    assert hf_weights.locate(CHECKPOINT) == (str(folder), True, None)
    clf = hf_weights.load_classifier(CHECKPOINT, labels, profile="gpu")
    assert clf.pretrained and clf.model.config.hidden_size == 32


def test_efficientnet_imagenet_file_is_taken_from_weights_first(weights_dir):
    stand_in = efficientnet.make_stand_in()  # the same format as Keras' ImageNet file
    assert stand_in.parent == weights_dir / "stand-ins"
    target = weights_dir / "keras" / weights.EFFICIENTNET_FILE
    target.parent.mkdir(parents=True)
    target.write_bytes(stand_in.read_bytes())
    assert weights.keras_file() == target
    _, record = efficientnet.load_backbone(32, "imagenet", allow_fallback=False)
    assert record == {"source": f"local weights {target}", "pretrained": True, "reason": None}


def test_dry_run_stand_ins_are_loaded_like_real_weights(weights_dir):
    _, record = efficientnet.load_backbone(32, str(weights_dir / "absent.h5"),
                                           allow_fallback=False, stand_in=True)
    assert record["source"] == "stand-in" and record["pretrained"] is False
    assert record["file"] == str(weights_dir / "stand-ins" / weights.EFFICIENTNET_FILE)
    assert record["reason"] == f"dry run: no weights file at {weights_dir / 'absent.h5'}"
