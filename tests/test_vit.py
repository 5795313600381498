"""Fast tests of common.vit, common.keras_training and common.vit_training (tensorflow backend
unless KERAS_BACKEND says otherwise)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from common.core import runtime  # noqa: E402
from common.inference.probabilities import keras_probabilities  # noqa: E402
from common.models import vit  # noqa: E402
from common.training import keras_fit as keras_training  # noqa: E402
from common.training import vit_runs as vit_training  # noqa: E402
from conftest import optimiser_of, small_vit, vit_model  # noqa: E402

SMALL = dict(projection_dim=16, num_heads=2, transformer_layers=2, mlp_head_units=(32,))



@pytest.mark.parametrize(
    "image_size,patch_size,expected", [(32, 6, 25), (72, 6, 144), (72, 8, 81), (144, 16, 81)]
)
def test_num_patches_and_patches_layer(image_size, patch_size, expected):
    assert vit.num_patches(image_size, patch_size) == expected
    images = np.zeros((2, image_size, image_size, 3), "float32")
    out = keras.ops.convert_to_numpy(vit.Patches(patch_size)(images))
    assert out.shape == (2, expected, patch_size * patch_size * 3)


@pytest.mark.parametrize("image_size,patch_size", [(32, 8), (32, 6)])
def test_patches_to_image_inverts_patches(image_size, patch_size):
    # 'valid' patches: with 32 px / patch 6 only the top-left 30x30 pixels are covered.
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, image_size, image_size, 3)).astype("float32")
    patches = keras.ops.convert_to_numpy(vit.Patches(patch_size)(img))[0]
    rebuilt = vit.patches_to_image(patches, image_size, patch_size)
    covered = (image_size // patch_size) * patch_size
    assert rebuilt.shape == (covered, covered, 3)
    np.testing.assert_array_equal(rebuilt, img[0, :covered, :covered])


@pytest.mark.parametrize(
    "num_classes,image_size,patch_size,kwargs,stats",
    [
        (7, 32, 8, dict(), None),
        (3, 36, 6, dict(augmentation="strong", augment_in_model=True, stochastic_depth_rate=0.1),
         ([120.0, 110.0, 100.0], [3000.0, 2900.0, 2800.0])),
    ],
)
def test_output_shape(num_classes, image_size, patch_size, kwargs, stats):
    model = vit_model(small_vit(image_size, patch_size, **kwargs), num_classes, stats)
    x = np.random.default_rng(0).integers(0, 256, (4, image_size, image_size, 3))
    assert model.predict(x.astype("float32"), verbose=0).shape == (4, num_classes)
    out = model(x.astype("float32"), training=True)  # augmentation + drop path active
    assert tuple(out.shape) == (4, num_classes)
    assert model.get_layer("logits").dtype_policy.compute_dtype == "float32"


def test_hybrid_stem_tokens_and_reload(tmp_path):
    model = vit_model(small_vit(32, 8, stem_channels=[8, 8, 16]), 4)
    # three stride-2 convolutions: 32 px -> a 4 x 4 grid of tokens, 8 px a side each
    assert model.get_layer("stem_tokens").output.shape == (None, 16, 16)
    assert model.get_layer("encoder").num_patches == vit.num_patches(32, 8)
    x = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "hybrid.keras")
    reloaded = keras.saving.load_model(tmp_path / "hybrid.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size,patch,channels", [(32, 4, [8, 8, 8]), (36, 8, [8, 8, 8])])
def test_hybrid_stem_rejects_mismatched_patch_size(size, patch, channels):
    with pytest.raises(ValueError, match="stem_channels|image_size"):
        small_vit(size, patch, stem_channels=channels)


def test_save_and_reload_gives_identical_predictions(tmp_path):
    cfg = small_vit(32, 8, stochastic_depth_rate=0.1, augmentation="strong",
                    augment_in_model=True, schedule="cosine", epochs=10, warmup_epochs=2)
    model = vit_model(cfg, 5, ([127.0] * 3, [4000.0] * 3))
    optimizer = keras_training.make_optimizer(cfg.optimiser, cfg.epochs, 1)
    keras_training.compile_classifier(model, optimizer, label_smoothing=0.1)
    x = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3)).astype("float32")
    model.optimizer.build(model.trainable_variables)
    path = tmp_path / "vit.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)


def test_smoothed_loss_matches_categorical_crossentropy():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], "float32")
    labels = np.array([0, 2])
    ref = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(
        np.eye(3, dtype="float32")[labels], logits)
    got = keras_training.SparseSmoothedCrossentropy(0.1)(labels, logits)
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-6)


def test_make_optimizer_cosine_warmup():
    opt = keras_training.make_optimizer(*optimiser_of(
        small_vit(learning_rate=1e-3, epochs=10, warmup_epochs=1, schedule="cosine")), 10)
    assert isinstance(opt, keras.optimizers.AdamW)
    for step, expected in [(0, 0.0), (5, 5e-4), (10, 1e-3), (55, 5e-4), (100, 0.0)]:
        opt.iterations.assign(step)
        assert float(opt.learning_rate) == pytest.approx(expected, abs=1e-9)
    constant = keras_training.make_optimizer(*optimiser_of(small_vit(learning_rate=3e-4)), 10)
    assert float(constant.learning_rate) == pytest.approx(3e-4)


def test_make_optimizer_linear_decay_to_zero_at_the_budget():
    opt = keras_training.make_optimizer(*optimiser_of(
        small_vit(learning_rate=1e-3, epochs=10, warmup_epochs=1, schedule="linear")), 10)
    for step, expected in [(0, 0.0), (5, 5e-4), (10, 1e-3), (55, 5e-4), (100, 0.0), (120, 0.0)]:
        opt.iterations.assign(step)
        assert float(opt.learning_rate) == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="schedule"):
        small_vit(schedule="step")


def test_train_keeps_the_best_epoch_from_select_from_epoch_on(tmp_path):
    """One training: a full history of floats, and the model returned (and saved) is the
    best validation epoch from ``select_from_epoch`` on."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 60).astype("int64")
    x = rng.integers(0, 256, (60, 16, 16, 3)).astype("uint8")  # noise: val accuracy wanders
    keras.utils.set_random_seed(1)
    model = vit_model(small_vit(), 3)
    optimizer = keras_training.make_optimizer(*optimiser_of(small_vit(learning_rate=3e-3)), 1)
    keras_training.compile_classifier(model, optimizer, label_smoothing=0.1)
    ckpt = tmp_path / "best.keras"
    out = keras_training.train(model, x[:40], y[:40], x[40:], y[40:], epochs=4, batch_size=8,
                               checkpoint_path=str(ckpt), verbose=0,
                               select_from_epoch=3)
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        assert len(out["history"][key]) == 4
        assert all(isinstance(v, float) for v in out["history"][key])
    assert out["train_seconds"] > 0 and out["train_images_per_second"] > 0
    val = out["history"]["val_accuracy"]
    assert out["best_epoch"] in (3, 4)
    assert out["best_val_accuracy"] == max(val[2:]) == val[out["best_epoch"] - 1]
    assert ckpt.exists()
    best = out["model"]
    assert best.predict(x[:2].astype("float32"), verbose=0).shape == (2, 3)
    _, acc, _ = best.evaluate(x[40:].astype("float32"), y[40:], verbose=0)
    assert acc == pytest.approx(out["best_val_accuracy"])  # the saved model is that epoch
    with pytest.raises(ValueError, match="select_from_epoch"):
        keras_training.train(model, x[:40], y[:40], x[40:], y[40:], epochs=2, batch_size=8,
                             checkpoint_path=str(tmp_path / "other.keras"), verbose=0,
                             select_from_epoch=3)


def test_with_ema_the_checkpoint_and_validation_use_the_averaged_weights(tmp_path):
    """ema_momentum: the model kept is the moving average of the weights after each step
    (recomputed here from the trained weights), at the best validation epoch, and that
    epoch's val_accuracy is the averaged model's."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 60).astype("int64")
    x = rng.integers(0, 256, (60, 16, 16, 3)).astype("uint8")
    keras.utils.set_random_seed(2)
    model = vit_model(small_vit(), 3)
    keras_training.compile_classifier(
        model, keras_training.make_optimizer(
            *optimiser_of(small_vit(learning_rate=1e-2, ema_momentum=0.7)), 1))
    averages = []  # per epoch: the moving average of the trainable weights, as numpy

    class Average(keras.callbacks.Callback):
        ema = None

        def on_train_batch_end(self, batch, logs=None):
            now = [np.asarray(w, dtype="float64") for w in model.get_weights()]
            self.ema = now if self.ema is None else [
                0.7 * a + 0.3 * w for a, w in zip(self.ema, now)]

        def on_epoch_begin(self, epoch, logs=None):
            if self.ema is not None:
                averages.append(self.ema)

        def on_train_end(self, logs=None):
            averages.append(self.ema)

    trainable = {id(v) for v in model.trainable_variables}
    which = [id(v) in trainable for v in model.weights]
    out = keras_training.train(model, x[:40], y[:40], x[40:], y[40:], epochs=3, batch_size=8,
                               checkpoint_path=str(tmp_path / "best.keras"), verbose=0,
                               callbacks=[Average()])
    best = out["model"]
    expected = averages[out["best_epoch"] - 1]
    for got, want, is_trainable in zip(best.get_weights(), expected, which):
        if is_trainable:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    _, acc, _ = best.evaluate(x[40:].astype("float32"), y[40:], verbose=0)
    assert acc == pytest.approx(out["best_val_accuracy"])
    assert small_vit(ema_momentum=0.99).optimiser.ema_momentum == 0.99


def test_configure_precision_keeps_float32_logits():
    try:
        assert runtime.set_keras_precision(True) == "mixed_bfloat16"
        model = vit_model(small_vit(), 3)
        assert model.get_layer("encoder").compute_dtype == "bfloat16"
        assert model.output.dtype == "float32"
    finally:
        assert runtime.set_keras_precision(False) == "float32"


def _epoch(ds):
    """One epoch of batches as numpy arrays, from tf.data or from a Batches PyDataset."""
    if isinstance(ds, keras_training.Batches):
        out = [ds[i] for i in range(len(ds))]
        ds.on_epoch_end()
        return [(np.asarray(a), np.asarray(b)) for a, b in out]
    return [(a.numpy(), b.numpy()) for a, b in ds]


@pytest.mark.parametrize("level", ["strong", "heavy", "efficientnet"])
@pytest.mark.parametrize("loader", ["tf.data", "Batches"])
def test_make_dataset_augments_in_the_pipeline(loader, level):
    """Both loaders (tf.data on tensorflow, a PyDataset on torch) batch, shuffle and augment
    the same way, and a seed gives the same batches."""
    def make(*args, **kwargs):
        if loader == "Batches":
            return keras_training.Batches(*args, **kwargs)
        return keras_training.make_dataset(*args, **kwargs)

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    y = np.arange(10)
    plain = _epoch(make(x, y, 4))
    assert [a.shape[0] for a, _ in plain] == [4, 4, 2]
    assert plain[0][0].dtype == np.float32
    np.testing.assert_array_equal(np.concatenate([a for a, _ in plain]), x.astype("float32"))
    keras.utils.set_random_seed(0)
    augmented = _epoch(make(x, y, 4, augmentation=level))
    xa = np.concatenate([a for a, _ in augmented])
    assert xa.shape == x.shape and xa.dtype == np.float32
    assert not np.allclose(xa, x)  # the images changed ...
    np.testing.assert_array_equal(np.concatenate([b for _, b in augmented]), y)  # not labels
    # fresh random transforms for every image of every epoch (not one draw traced once)
    same = np.repeat(x[:1], 8, axis=0)
    ds = make(same, np.zeros(8), 4, augmentation=level)
    first, second = (np.concatenate([a for a, _ in _epoch(ds)]) for _ in range(2))
    assert not np.allclose(first, second)
    assert not np.allclose(first[0], first[1]) and not np.allclose(first[0], first[4])
    # reproducible: the same seed gives the same shuffled, augmented batches
    runs = []
    for _ in range(2):
        keras.utils.set_random_seed(5)
        ds = make(np.repeat(x, 4, axis=0), np.repeat(y, 4), 4, shuffle=True, seed=5,
                  augmentation=level)
        runs.append(np.concatenate([a for a, _ in _epoch(ds) + _epoch(ds)]))
    np.testing.assert_array_equal(runs[0], runs[1])
    shuffled = np.concatenate([b for _, b in _epoch(make(x, y, 4, shuffle=True, seed=1))])
    assert sorted(shuffled) == list(y) and list(shuffled) != list(y)
    with pytest.raises(ValueError, match="unknown augmentation"):
        make(x, y, 4, augmentation="extreme")


def test_use_keras_backend_names_the_fix():
    assert runtime.use_keras_backend(keras.backend.backend()) == keras.backend.backend()
    other = "torch" if keras.backend.backend() != "torch" else "tensorflow"
    with pytest.raises(RuntimeError, match="restart the kernel"):
        runtime.use_keras_backend(other)
    with pytest.raises(ValueError, match="keras_backend must be one of"):
        runtime.use_keras_backend("jax")


def test_with_new_head_shares_every_other_layer(tmp_path):
    base = vit_model(small_vit(32, 8, stem_channels=[8, 8, 16]), 6)
    model = vit.with_new_head(base, 3, name="subset")
    x = np.random.default_rng(3).integers(0, 256, (2, 32, 32, 3)).astype("float32")
    assert model.predict(x, verbose=0).shape == (2, 3)
    assert base.predict(x, verbose=0).shape == (2, 6)
    assert model.get_layer("stem_conv0") is base.get_layer("stem_conv0")
    assert model.get_layer("logits") is not base.get_layer("logits")
    model.save(tmp_path / "subset.keras")
    reloaded = keras.saving.load_model(tmp_path / "subset.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_key_dim_sets_the_width_of_each_head():
    narrow = vit_model(small_vit(32, 8, key_dim=4), 6)
    usual = vit_model(small_vit(32, 8), 6)  # keras.io: projection_dim
    assert narrow.get_layer("block0_attention").get_config()["key_dim"] == 4
    assert usual.get_layer("block0_attention").get_config()["key_dim"] == SMALL["projection_dim"]
    assert narrow.count_params() < usual.count_params()


def test_a_new_head_from_rows_keeps_those_classes_scores():
    base = vit_model(small_vit(32, 8), 6)
    model = vit.with_new_head(base, 2, rows=[4, 1])
    x = np.random.default_rng(5).integers(0, 256, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), base.predict(x, verbose=0)[:, [4, 1]],
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="rows gives 1 output units for 2 classes"):
        vit.with_new_head(base, 2, rows=[4])
    with pytest.raises(ValueError, match="head_from_init needs init_from"):
        small_vit(head_from_init=True)


@pytest.mark.slow
def test_fit_config_refuses_a_network_it_cannot_start_from(smoke_run, tmp_path):
    """02 starts from a network of 01 (init_from): the smoke run's 02 does it and its test
    checks the weights it records. Here, the refusals, before any training: a network of
    another image size, and one that was never trained."""
    from conftest import task_of

    network = smoke_run["out"] / "models" / "smoke" / "01_vit_scratch" / "improved-hybrid"
    ten = task_of(smoke_run["data"], [2, 5], val_fraction=0.2)  # the smoke study's split
    cfg = small_vit(32, 8, name="subset", stem_channels=[8, 8, 8], epochs=1, batch_size=8,
                    augmentation="none")
    # another split_seed: 01's training images could be in this test set; refused at once
    other = task_of(smoke_run["data"], [2, 5], val_fraction=0.2, seed=7)
    with pytest.raises(ValueError) as err:
        vit_training.fit_config(cfg, other.parts, labels=other.labels,
                                model_dir=tmp_path / "m1", init_from=network)
    assert "\n" not in str(err.value)
    assert "was trained on another split than this run" in str(err.value)
    assert "data fingerprint" not in str(err.value)  # the same data folder
    with pytest.raises(ValueError, match="takes 24 px images but this configuration says"):
        vit_training.fit_config(cfg, ten.parts, labels=ten.labels, model_dir=tmp_path / "m2",
                                init_from=network)
    with pytest.raises(FileNotFoundError, match="run the notebook that trains it first"):
        vit_training.fit_config(cfg, ten.parts, labels=ten.labels, model_dir=tmp_path / "m3",
                                init_from=tmp_path / "absent")
    assert not any((tmp_path / m).exists() for m in ("m1", "m2", "m3"))
    # head_from_init: each class's output unit of 01's network, found by class id
    rows = vit_training._same_classes(network, ten.labels)
    units = vit_training.model_folder.read_labels(network)
    assert [units[r][0] for r in rows] == [cid for _, (cid, _) in sorted(ten.labels.items())]
    with pytest.raises(ValueError, match=r"no output for class ids \[999\]"):
        vit_training._same_classes(network, {0: (999, "absent")})


def test_run_cap_keeps_the_test_set_whole(synth_root):
    from common.data import splits
    from conftest import task_of

    parts = task_of(synth_root).parts
    capped = splits.budget(parts, 2, seed=0)
    assert capped.train.groupby("class_id").size().max() == 2
    assert capped.val.groupby("class_id").size().max() <= 2
    assert capped.test.equals(parts.test)


def test_set_torch_threads():
    import torch

    before = torch.get_num_threads()
    try:
        assert runtime.set_torch_threads(1) == 1 == torch.get_num_threads()
        assert runtime.set_torch_threads(None) == 1  # None leaves it as it is
        for bad in (0, -2, 1.5, True, "2"):
            with pytest.raises(ValueError, match="torch_threads"):
                runtime.set_torch_threads(bad)
    finally:
        torch.set_num_threads(before)


def test_probabilities_with_test_time_flip_average_the_mirror_image():
    model = vit_model(small_vit(), 3)
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    plain = keras_probabilities(model, x)
    mirror = keras_probabilities(model, x[:, :, ::-1])
    both = keras_probabilities(model, x, flip=True)
    np.testing.assert_allclose(plain.sum(axis=1), 1.0)
    np.testing.assert_allclose(both, (plain + mirror) / 2, rtol=1e-6)
    assert not np.allclose(both, plain)  # the mirror image is seen by the model
    symmetric = np.concatenate([x[:, :, :8], x[:, :, :8][:, :, ::-1]], axis=2)
    np.testing.assert_allclose(keras_probabilities(model, symmetric, flip=True),
                               keras_probabilities(model, symmetric), rtol=1e-6)


def test_a_run_from_another_network_gets_its_own_augmentation_and_stochastic_depth(
        synth_root, tmp_path):
    """The gpu profile's 02: it starts from 01's network, augments inside the model, and asks
    for strong augmentation and stochastic depth where 01 had standard and none. The network
    it trains has its settings (not 01's layers), with 01's weights; a network of another
    depth is refused in one line."""
    from conftest import task_of

    first = small_vit(24, 4, stem_channels=[8, 16], name="first", augmentation="standard",
                      augment_in_model=True, dropout=0.1)
    keras.utils.set_random_seed(0)
    network = vit_model(first, 6, (np.full(3, 100.0), np.zeros(3)))
    folder = tmp_path / "01" / "first"
    folder.mkdir(parents=True)
    network.save(folder / "model.keras")
    ten = task_of(synth_root, [2, 5])
    vit_training.write_model_info(first, folder, task_of(synth_root).labels, "of a test",
                                  task_of(synth_root).parts)
    assert ten.parts.fingerprints == task_of(synth_root).parts.fingerprints  # one study, two tasks
    cfg = small_vit(24, 4, stem_channels=[8, 16], name="second", augmentation="strong",
                    augment_in_model=True, stochastic_depth_rate=0.1, dropout=0.0,
                    init_from="first", epochs=1, batch_size=8)
    out, weights, _ = vit_training.train_config(cfg, ten.parts, labels=ten.labels,
                                                model_dir=tmp_path / "m", verbose=0,
                                                init_from=folder)
    names = [layer.name for layer in out["model"].layers]
    assert {"flip", "rotation", "zoom", "translation", "contrast"} <= set(names)
    assert out["model"].get_layer("block1_droppath").rate == pytest.approx(0.1)
    assert out["model"].get_layer("block0_attention").dropout == 0.0
    assert "stochastic depth" in weights["layers"]
    fresh = vit_training.start_from(network, cfg, 2)
    for name in ("stem_conv0", "block1_mlp_dense0"):
        for a, b in zip(fresh.get_layer(name).get_weights(),
                        network.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(fresh.get_layer("normalize").input_mean, [100.0] * 3)
    deeper = small_vit(24, 4, stem_channels=[8, 16], name="second", transformer_layers=3)
    with pytest.raises(ValueError, match="'block2_attention' is only in this run"):
        vit_training.start_from(network, deeper, 2)


def test_no_callback_of_a_training_waits_for_the_device_after_each_step(tmp_path):
    """Keras fetches each step's logs, and so waits for the accelerator between steps, as soon
    as one callback hooks every step without saying ``async_safe``: the progress bar of
    ``verbose=2`` did, and the throughput clock did. ``train`` fits with neither."""
    seen = {}

    class Stop(Exception):
        pass

    model = vit_model(small_vit(), 3)
    keras_training.compile_classifier(
        model, keras_training.make_optimizer(*optimiser_of(small_vit()), 1))
    model.optimizer.use_ema = True  # SwapEMAWeights too

    def fit(*args, callbacks, verbose, **kwargs):
        seen.update(callbacks=callbacks, verbose=verbose)
        raise Stop

    model.fit = fit
    x, y = np.zeros((8, 16, 16, 3), "uint8"), np.zeros(8, "int64")
    with pytest.raises(Stop):
        keras_training.train(model, x, y, x, y, epochs=1, batch_size=4, verbose=2,
                             checkpoint_path=tmp_path / "m.keras")
    assert seen["verbose"] == 0  # no progress bar; EpochLog prints a line an epoch
    base = keras.callbacks.Callback
    per_step = [type(cb).__name__ for cb in seen["callbacks"]
                if not getattr(cb, "async_safe", False)
                and any(getattr(type(cb), hook) is not getattr(base, hook)
                        for hook in ("on_batch_end", "on_train_batch_end"))]
    assert per_step == []
    assert {type(cb).__name__ for cb in seen["callbacks"]} >= {
        "BestCheckpoint", "ThroughputCallback", "EpochLog", "SwapEMAWeights"}


def test_a_starting_network_of_another_study_is_refused_before_training(synth_root, tmp_path):
    """A model folder records the data and split it was trained on; 02 refuses, in one line
    and before loading any image, a network of another split or of other data."""
    from common.data import synth
    from conftest import task_of

    first = small_vit(24, 6, name="first")
    folder = tmp_path / "first"
    folder.mkdir()
    keras.utils.set_random_seed(0)
    vit_model(first, 6).save(folder / "model.keras")
    cfg = first.model_copy(update={"name": "second", "init_from": "first", "epochs": 1})

    def start(task):
        return vit_training.train_config(cfg, task.parts, labels=task.labels, verbose=0,
                                         model_dir=tmp_path / "m", init_from=folder)

    with pytest.raises(ValueError, match="does not record the study it was trained in"):
        start(task_of(synth_root, [2, 5]))
    vit_training.write_model_info(first, folder, task_of(synth_root).labels, "here",
                                  task_of(synth_root).parts)
    with pytest.raises(ValueError, match=r"trained on another split than this run \(split"):
        start(task_of(synth_root, [2, 5], seed=7))
    other = synth.synth(tmp_path / "other", classes=6, per_class=11, test_per_class=4,
                        layout="devkit", size=48)  # one more image a class
    with pytest.raises(ValueError, match=r"trained on other data than this run \(data"):
        start(task_of(other, [2, 5]))
    assert not (tmp_path / "m").exists()


def test_the_builders_take_groups_and_declare_no_default_of_the_schema():
    """build_vit takes the network and augmentation groups, make_optimizer the optimiser
    group: the schema declares every default once, and no builder restates one (a default
    changed in the schema reaches every run)."""
    import inspect

    from common.config import schema

    keys = {key for group in (schema.VitNetwork, schema.VitOptimiser, schema.VitAugmentation,
                              schema.KerasVitRun)
            for key, field in group.model_fields.items() if not field.is_required()}
    for builder in (vit.build_vit, keras_training.make_optimizer):
        for name, parameter in inspect.signature(builder).parameters.items():
            assert not (name in keys and parameter.default is not inspect.Parameter.empty), \
                (builder.__name__, name)
    cfg = small_vit(learning_rate=4e-3, stem_channels=[8, 8, 16], augmentation="strong",
                    augment_in_model=True)
    model = vit.build_vit(cfg.network, cfg.augmentation, 3)
    assert {"stem_conv2", "flip", "translation"} <= {layer.name for layer in model.layers}
    opt = keras_training.make_optimizer(cfg.optimiser, cfg.epochs, 2)
    assert float(opt.learning_rate) == pytest.approx(4e-3)
