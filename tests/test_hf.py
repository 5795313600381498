"""Unit tests of the Hugging Face side: weights loading and its honest fallback
(common.hf_weights), attention rollout (common.attention), augmentation, the per-epoch
history and the best-epoch keeper (common.hf_training), one fine-tuning run (common.finetune)."""

from __future__ import annotations

import numpy as np
import pytest

from common.config.schema import HfFallback, HfRun, HfTraining
from common.core import runtime
from common.inference.probabilities import hf_probabilities
from common.inference import attention
from common.models import hf_classifier as hf_weights
from common.report import figures, presentation
from common.training import hf_trainer as hf_training

from conftest import TINY_VIT as TINY

LABELS = {0: (3, "Car A"), 1: (7, "Car B"), 2: (9, "Car C")}
FALLBACK = HfFallback(config=TINY, training={"learning_rate": 1e-3})


@pytest.fixture
def unreachable_hub(monkeypatch, tmp_path):
    """A hub that refuses connections (a closed loopback port) and an empty cache."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hf_weights._locate_on_hub.cache_clear()
    yield
    hf_weights._locate_on_hub.cache_clear()


# --------------------------------------------------------------------------- loading

def test_local_checkpoint_loads_with_a_new_head(tiny_checkpoint):
    clf = hf_weights.load_classifier(str(tiny_checkpoint), LABELS, profile="gpu")
    assert clf.pretrained
    assert clf.weights == {"source": str(tiny_checkpoint), "pretrained": True, "reason": None}
    assert clf.model.config.num_labels == 3
    assert clf.model.config.id2label == {0: "Car A", 1: "Car B", 2: "Car C"}
    assert hf_weights.input_size(clf.processor) == 32
    x = np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    probs = hf_probabilities(clf.model, clf.processor, x)
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_unreachable_hub_falls_back_with_the_reason(unreachable_hub):
    clf = hf_weights.load_classifier("vit-cars-poc-tests/never-published", LABELS,
                                     profile="smoke", fallback=FALLBACK)
    assert not clf.pretrained
    assert clf.weights["source"] == "random-init" and clf.weights["pretrained"] is False
    assert clf.weights["requested"] == "vit-cars-poc-tests/never-published"
    reason = clf.weights["reason"]
    assert reason.startswith("pretrained unavailable: hub unreachable (")
    assert "not in the local cache" in reason and "\n" not in reason
    assert clf.training == {"learning_rate": 1e-3}
    assert clf.model.config.num_labels == 3 and clf.model.config.hidden_size == 32
    assert hf_weights.input_size(clf.processor) == 32


def test_gpu_profile_refuses_to_train_from_scratch(unreachable_hub):
    import time

    start = time.perf_counter()
    with pytest.raises(hf_weights.PretrainedUnavailable) as err:
        hf_weights.load_classifier("vit-cars-poc-tests/never-published", LABELS, profile="gpu",
                                   fallback=FALLBACK)
    assert time.perf_counter() - start < 30  # no long retries
    message = str(err.value)
    for part in ("vit-cars-poc-tests/never-published", "hub unreachable",
                 "never trains from scratch", "HF_HOME", "save_pretrained"):
        assert part in message, part


def test_no_fallback_given_refuses_too(unreachable_hub):
    with pytest.raises(hf_weights.PretrainedUnavailable):
        hf_weights.load_classifier("vit-cars-poc-tests/never-published", LABELS,
                                   profile="cpu", fallback={})


def test_local_folder_problems_are_named(tmp_path, tiny_checkpoint):
    with pytest.raises(hf_weights.PretrainedUnavailable, match="does not exist"):
        hf_weights.locate(str(tmp_path / "missing"))
    (tmp_path / "nocfg").mkdir()
    with pytest.raises(hf_weights.PretrainedUnavailable, match="no config.json"):
        hf_weights.locate(str(tmp_path / "nocfg"))
    unsafe = tmp_path / "unsafe"
    unsafe.mkdir()
    (unsafe / "config.json").write_text((tiny_checkpoint / "config.json").read_text())
    (unsafe / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(hf_weights.PretrainedUnavailable, match="never unpickles"):
        hf_weights.locate(str(unsafe))
    clf = hf_weights.load_classifier(str(unsafe), LABELS, profile="cpu", fallback=FALLBACK)
    assert clf.weights["source"] == "random-init"
    assert "never unpickles" in clf.weights["reason"]


# --------------------------------------------------------------------------- attention rollout

def _random_attentions(rng, layers=3, batch=2, heads=4, tokens=17):
    logits = rng.normal(size=(layers, batch, heads, tokens, tokens))
    att = np.exp(logits)
    return list(att / att.sum(axis=-1, keepdims=True))


def test_rollout_rows_are_distributions():
    rolled = attention.rollout_matrix(_random_attentions(np.random.default_rng(0)))
    assert rolled.shape == (2, 17, 17)
    assert np.allclose(rolled.sum(axis=-1), 1.0)
    assert (rolled >= 0).all()


def test_rollout_maps_shape_and_scale():
    maps = attention.attention_rollout(_random_attentions(np.random.default_rng(1)))
    assert maps.shape == (2, 4, 4)
    assert np.allclose(maps.max(axis=(1, 2)), 1.0) and (maps >= 0).all()
    # DeiT's distillation token (two tokens before the patches) is dropped too
    maps = attention.attention_rollout(_random_attentions(np.random.default_rng(2), tokens=18))
    assert maps.shape == (2, 4, 4)


def test_rollout_follows_abnar_and_zuidema():
    """One layer, one head: (A + I) normalised; the CLS row over the patches."""
    att = np.zeros((1, 1, 5, 5))
    att[0, 0, 0] = [0.0, 0.1, 0.2, 0.3, 0.4]  # CLS attends to the patches
    att[0, 0, 1:, 1:] = np.eye(4)
    rolled = attention.rollout_matrix([att])
    assert np.allclose(rolled[0, 0], [0.5, 0.05, 0.1, 0.15, 0.2])
    maps = attention.attention_rollout([att])
    assert np.allclose(maps[0].ravel(), [0.25, 0.5, 0.75, 1.0])
    # two layers multiply, the later layer on the left
    a1, a2 = _random_attentions(np.random.default_rng(3), layers=2, batch=1, heads=1, tokens=5)
    norm = [(a[0, 0] + np.eye(5)) / (a[0, 0] + np.eye(5)).sum(-1, keepdims=True) for a in (a1, a2)]
    assert np.allclose(attention.rollout_matrix([a1, a2])[0], norm[1] @ norm[0])


def test_attention_maps_of_a_model(tiny_checkpoint):
    clf = hf_weights.load_classifier(str(tiny_checkpoint), LABELS, profile="gpu")
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    maps = attention.attention_maps(clf.model, clf.processor, x)
    assert maps.shape == (3, 4, 4) and np.allclose(maps.max(axis=(1, 2)), 1.0)


# --------------------------------------------------------------------------- data, training

def test_augment_keeps_shape_and_flips():
    import torch

    image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    torch.manual_seed(0)
    out = [hf_training.Augment(flip=True, crop_scale=None)(image) for _ in range(20)]
    assert all(o.shape == image.shape and o.dtype == np.uint8 for o in out)
    flipped = [np.array_equal(o, image[:, ::-1]) for o in out]
    kept = [np.array_equal(o, image) for o in out]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    cropped = hf_training.Augment(flip=False, crop_scale=(0.3, 0.5))(image)
    assert cropped.shape == image.shape and not np.array_equal(cropped, image)


def test_history_from_logs():
    logs = [{"loss": 2.0, "epoch": 1.0},
            {"eval_val_loss": 1.5, "eval_val_accuracy": 0.4, "epoch": 1.0},
            {"eval_train_loss": 1.4, "eval_train_accuracy": 0.5, "epoch": 1.0},
            {"loss": 1.0, "epoch": 2.0},
            {"eval_val_loss": 1.2, "eval_val_accuracy": 0.6, "epoch": 2.0},
            {"eval_train_loss": 0.9, "eval_train_accuracy": 0.7, "epoch": 2.0},
            {"train_loss": 1.5, "train_runtime": 3.0, "epoch": 2.0}]
    assert hf_training.history_from_logs(logs) == {
        "loss": [2.0, 1.0], "val_loss": [1.5, 1.2], "accuracy": [0.5, 0.7],
        "val_accuracy": [0.4, 0.6]}


def test_keep_best_restores_the_best_epoch():
    import torch

    model = torch.nn.Linear(2, 2)
    keep = hf_training._keep_best()

    class State:
        epoch = 0

    weights = {}
    for epoch, acc in enumerate([0.5, 0.7, 0.6, 0.7], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        State.epoch = epoch
        weights[epoch] = model.weight.clone()
        keep.on_evaluate(None, State, None, metrics={"eval_val_accuracy": acc}, model=model)
        keep.on_evaluate(None, State, None, metrics={"eval_train_accuracy": 1.0}, model=model)
    assert keep.epoch == 2 and keep.best == 0.7  # the first best, as Keras keeps it
    model.load_state_dict(keep.state_dict)
    assert torch.equal(model.weight, weights[2])


def test_fine_tune_history_matches_epochs(tiny_checkpoint):
    clf = hf_weights.load_classifier(str(tiny_checkpoint), LABELS, profile="smoke")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    y = np.arange(24) % 3
    runtime.set_torch_threads(1)
    fit = hf_training.fine_tune(clf, x[:18], y[:18], x[18:], y[18:],
                               HfTraining(epochs=2, batch_size=8, learning_rate=1e-3,
                                          train_eval_images=8), seed=0)
    h = fit["history"]
    assert {len(v) for v in h.values()} == {2}
    assert fit["best_val_accuracy"] == max(h["val_accuracy"])
    assert fit["train_images_per_second"] > 0 and fit["train_seconds"] > 0
    assert not clf.model.training


# --------------------------------------------------------------------------- reports

def test_per_class_report_and_grid_picks():
    y = np.array([0, 1, 2, 2, 1, 0])
    probs = np.eye(3)[[0, 1, 1, 2, 1, 2]]
    report = presentation.per_class_report(y, probs, LABELS)
    assert list(report.index[:3]) == ["3 Car A", "7 Car B", "9 Car C"]
    assert list(report.columns) == ["précision", "rappel", "F1", "images"]
    assert report.loc["7 Car B", "rappel"] == 1.0 and report.loc["7 Car B", "précision"] == 2 / 3
    assert report["images"].iloc[:3].tolist() == [2, 2, 2]
    assert figures.one_per_class(y, 4) == [0, 1, 2, 3]


def test_one_per_class_matches_the_prediction_grid(tmp_path, monkeypatch):
    y = np.array([2, 0, 0, 1, 2, 1])
    shown = {}
    monkeypatch.setattr(figures, "predictions",
                        lambda x, t, p, pr, path, cols=5: shown.setdefault("x", x))
    figures.prediction_grid({"x": np.arange(6), "y": y, "probs": np.eye(3)[y]},
                            {0: (1, "a"), 1: (2, "b"), 2: (3, "c")}, 4, tmp_path / "g.png")
    assert list(shown["x"]) == figures.one_per_class(y, 4)


def test_fit_config_from_a_local_checkpoint(tiny_checkpoint, synth_root, tmp_path):
    """One run of notebooks 03/04 from a save_pretrained folder: splits, fine-tuning, test
    metrics and a model folder that python -m common predict reads back with official class ids."""
    from common.config.loading import load
    from common.inference.predictor import Predictor
    from common.results import contract as results
    from common.results import predictions
    from common.results.provenance import environment
    from common.training import finetune_runs
    from conftest import task_of

    task = task_of(synth_root, [1, 2, 3], val_fraction=0.2)
    runtime.set_torch_threads(1)
    p = load("03_vit_finetune", "gpu", checkpoint=str(tiny_checkpoint), seed=0)
    record, test = finetune_runs.fit_config(
        HfRun(name="balanced", balance=True, epochs=2, batch_size=8, learning_rate=1e-3,
              train_eval_images=8), task.parts, task.labels, p, model_dir=tmp_path / "model")
    assert record.weights.source == str(tiny_checkpoint)
    assert record.params["balance"] is True and record.params["image_size"] == 32
    assert len(record.history.loss) == 2
    assert record.metrics.test_images == len(task.parts.test) == 12  # the official test
    assert set(test["table"]["class_id"]) == {1, 2, 3}
    csv = predictions.to_csv({"balanced": record.predictions})
    payload = {
        "notebook": "03_vit_finetune", "profile": "smoke", "dry_run": False, "created": "",
        "duration_s": 1, "git_commit": None, "params": {}, "figures": [],
        "runs": [{**record.model_dump(mode="json"),
                  "model_dir": "models/smoke/03_vit_finetune/balanced"}],
        "environment": environment(), "dataset": task.record(),
        "predictions": {"file": "p.csv", "sha256": predictions.sha256(csv)}}
    assert results.problems(payload, predictions=csv) == []
    # a run scored on other images than the task's test set breaks the contract
    payload["dataset"] = {**task.record(), "test_set": {"images": 99, "fingerprint": "x"}}
    assert any("scored on 12 test images, not on the task's 99" in p
               for p in results.problems(payload))
    rows = Predictor(tmp_path / "model").predict_files(
        list(test["table"]["path"][:3]), top=2)
    assert all(r["class_id"] in (1, 2, 3) and len(r["top"]) == 2 for r in rows)
