"""Mixup and CutMix (common.training.mixing) and a training run on mixed batches, through
both input pipelines (tf.data on the tensorflow backend, Batches on the others)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from common.training import keras_fit  # noqa: E402
from common.training.mixing import mix_batch, mix_tensor  # noqa: E402
from conftest import small_vit, vit_model  # noqa: E402

SMALL = dict(projection_dim=16, num_heads=2, transformer_layers=2, mlp_head_units=(32,))


def _distinct(n=8, size=6):
    """n images of one grey level each (image k is all k * 10), labels 0..n-1."""
    x = np.stack([np.full((size, size, 3), 10.0 * k, dtype="float32") for k in range(n)])
    return x, np.arange(n)


def _partner(row, i):
    """The other class of a soft label row (the image mixed into image i), or i."""
    others = [j for j in np.flatnonzero(row > 1e-6) if j != i]
    return others[0] if others else i


@pytest.mark.parametrize("seed", range(5))
def test_mixup_blends_each_image_and_its_label_by_the_same_weight(seed):
    x, y = _distinct()
    mixed, soft = mix_batch(x, y, 8, np.random.default_rng(seed), mixup_alpha=0.4)
    assert soft.shape == (8, 8) and soft.dtype == np.float32
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    for i in range(8):
        j, lam = _partner(soft[i], i), soft[i, i]
        np.testing.assert_allclose(mixed[i], lam * x[i] + (1 - lam) * x[j], atol=1e-3)


@pytest.mark.parametrize("seed", range(5))
def test_cutmix_pastes_a_box_whose_area_is_the_label_share(seed):
    x, y = _distinct(size=16)
    mixed, soft = mix_batch(x, y, 8, np.random.default_rng(seed), cutmix_alpha=1.0)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    for i in range(8):
        j = _partner(soft[i], i)
        if j == i:
            continue
        pasted = (mixed[i, ..., 0] == x[j, 0, 0, 0])
        assert np.all(pasted | (mixed[i, ..., 0] == x[i, 0, 0, 0]))  # one image or the other
        rows, cols = np.flatnonzero(pasted.any(axis=1)), np.flatnonzero(pasted.any(axis=0))
        assert pasted.sum() == len(rows) * len(cols)  # a box
        assert soft[i, j] == pytest.approx(pasted.mean(), abs=1e-6)


def test_without_alphas_the_batch_is_unchanged_with_one_hot_labels():
    x, y = _distinct()
    mixed, soft = mix_batch(x, y, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(mixed, x)
    np.testing.assert_array_equal(soft, np.eye(10, dtype="float32")[y])


def test_both_alphas_take_one_kind_per_batch():
    x, y = _distinct(size=16)
    kinds = set()
    for seed in range(20):
        mixed, soft = mix_batch(x, y, 8, np.random.default_rng(seed), mixup_alpha=0.4,
                                cutmix_alpha=1.0)
        # cutmix keeps only the batch's grey levels; mixup makes new ones
        kinds.add("cutmix" if set(np.unique(mixed)) <= set(np.unique(x)) else "mixup")
    assert kinds == {"mixup", "cutmix"}


@pytest.mark.parametrize("seed", range(8))  # mixup and CutMix both
def test_torch_batches_mix_as_numpy_ones_from_the_same_draws(seed):
    """mix_tensor (channels first, torch: the torch loop's) gives mix_batch's images and
    labels (channels last, numpy: tf.data's) from the same generator state."""
    import torch

    x = np.random.default_rng(seed).uniform(0, 255, (8, 12, 10, 3)).astype("float32")
    y = np.arange(8) % 5
    kw = dict(mixup_alpha=0.8, cutmix_alpha=1.0)
    want, want_y = mix_batch(x, y, 5, np.random.default_rng(seed), **kw)
    got, got_y = mix_tensor(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), y, 5,
                            np.random.default_rng(seed), **kw)
    np.testing.assert_allclose(got.permute(0, 2, 3, 1).numpy(), want, atol=1e-3)
    np.testing.assert_allclose(got_y, want_y, rtol=1e-6)


def test_batches_mix_the_same_way_on_every_run():
    x = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3)).astype("uint8")
    y = np.arange(20) % 4
    mix = {"num_classes": 4, "mixup_alpha": 0.4, "cutmix_alpha": 1.0}
    one, two = (keras_fit.Batches(x, y, 8, shuffle=True, seed=3, mix=mix) for _ in range(2))
    a, b = one[1], two[1]
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[1].shape == (8, 4)
    one.on_epoch_end()
    assert not np.array_equal(one[1][1], a[1])  # a new epoch, new draws


def test_a_run_trains_on_mixed_batches_and_validates_on_plain_labels(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 48).astype("int64")
    x = rng.integers(0, 256, (48, 16, 16, 3)).astype("uint8")
    keras.utils.set_random_seed(1)
    cfg = small_vit(learning_rate=3e-3)
    model = vit_model(cfg, 3)
    keras_fit.compile_classifier(model, keras_fit.make_optimizer(cfg.optimiser, cfg.epochs, 1),
                                 soft_labels=True)
    out = keras_fit.train(model, x[:32], y[:32], x[32:], y[32:], epochs=2, batch_size=8,
                          checkpoint_path=str(tmp_path / "best.keras"), verbose=0,
                          mix={"num_classes": 3, "mixup_alpha": 0.4, "cutmix_alpha": 1.0})
    history = out["history"]
    assert all(np.isfinite(history["loss"])) and all(0 <= a <= 1 for a in history["accuracy"])
    _, acc, _ = out["model"].evaluate(x[32:].astype("float32"), y[32:], verbose=0)
    assert acc == pytest.approx(out["best_val_accuracy"])
    assert small_vit(mixup_alpha=0.2).augmentation.mixes
    assert not small_vit().augmentation.mixes
    with pytest.raises(ValueError, match="cutmix_alpha"):
        small_vit(cutmix_alpha=-1)


def test_only_the_keras_vit_runs_take_mixing_keys():
    """The fine-tuning runs do not mix: a mixing key there is an unknown key, refused."""
    from common.config import schema

    for key in ("mixup_alpha", "cutmix_alpha"):
        assert key in schema.VitAugmentation.model_fields
        assert key not in schema.HfRun.model_fields
        assert key not in schema.EfficientNetRun.model_fields
