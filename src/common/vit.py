"""Vision Transformer (ViT) for Stanford Cars, after the keras.io example
"Image classification with Vision Transformer" (Khalid Salama), in Keras 3.

Layers use ``keras.ops`` only, so the model runs on the tensorflow and torch
backends. Differences from the keras.io example, as the 2022 study asks:
the encoder output goes through LayerNormalization + GlobalAveragePooling1D
(the example flattens it), normalisation lives inside the model (a saved model
takes raw 0..255 RGB), and an optional stochastic depth (drop path) follows
"How to train your ViT?" (Steiner et al., 2021). :func:`fit_config` applies the
augmentation layers in the tf.data pipeline, on a CPU thread beside the training
step (faster on CPU, see benchmarks/bench_vit.py), or, with ``augment_in_model``,
inside the model as the example does (on the GPU, where the CPU would not keep up).

``stem_channels`` turns it into a hybrid ViT, as the "R+ViT" models of that paper: a few
stride-2 convolutions (3x3, batch norm, ReLU) replace the cut into patches, and each cell of
the final feature map becomes a token; the transformer part is unchanged.
"""

from __future__ import annotations

import time

import keras
import numpy as np
from keras import layers, ops

PACKAGE = "vit_cars"


def num_patches(image_size: int, patch_size: int) -> int:
    """Number of patches; 'valid' cropping drops the right/bottom remainder."""
    return (image_size // patch_size) ** 2


@keras.saving.register_keras_serializable(package=PACKAGE)
class Patches(layers.Layer):
    """(B, H, W, C) images -> (B, num_patches, patch_size * patch_size * C).

    Patches are taken row by row with 'valid' padding, so when H is not a
    multiple of patch_size the last H % patch_size rows/columns are dropped.
    """

    def __init__(self, patch_size: int, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)

    def call(self, images):
        p = self.patch_size
        patches = ops.image.extract_patches(images, size=p, strides=p, padding="valid")
        batch = ops.shape(images)[0]
        return ops.reshape(patches, (batch, -1, p * p * ops.shape(images)[-1]))

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size}


def patches_to_image(patches, image_size: int, patch_size: int, channels: int = 3) -> np.ndarray:
    """Inverse of ``Patches`` for one image: (num_patches, p*p*C) -> (h, h, C).

    ``h = (image_size // patch_size) * patch_size``: the cropped image that the
    patches cover.
    """
    n = image_size // patch_size
    x = np.asarray(patches).reshape(n, n, patch_size, patch_size, channels)
    return x.transpose(0, 2, 1, 3, 4).reshape(n * patch_size, n * patch_size, channels)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PatchEncoder(layers.Layer):
    """Linear projection of the patches plus a learned position embedding."""

    def __init__(self, num_patches: int, projection_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_patches = int(num_patches)
        self.projection_dim = int(projection_dim)
        self.projection = layers.Dense(self.projection_dim, name="projection")
        self.position_embedding = layers.Embedding(
            self.num_patches, self.projection_dim, name="position_embedding"
        )

    def build(self, input_shape):
        self.projection.build(input_shape)
        self.position_embedding.build((None, self.num_patches))
        self.built = True

    def call(self, patches):
        positions = ops.expand_dims(ops.arange(0, self.num_patches, 1), axis=0)
        return self.projection(patches) + self.position_embedding(positions)

    def get_config(self):
        return {
            **super().get_config(),
            "num_patches": self.num_patches,
            "projection_dim": self.projection_dim,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class StochasticDepth(layers.Layer):
    """Drop path: in training, zero a residual branch per sample with
    probability ``rate`` and scale the kept ones by 1 / (1 - rate)."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        noise = keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype)
        return x * ops.floor(keep + noise) / keep

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def _mlp(x, units, dropout, prefix):
    for i, u in enumerate(units):
        x = layers.Dense(u, activation=keras.activations.gelu, name=f"{prefix}_dense{i}")(x)
        x = layers.Dropout(dropout, name=f"{prefix}_dropout{i}")(x)
    return x


def augmentation_layers(augmentation: str = "standard") -> list:
    """Random augmentation layers (active in training only)."""
    if augmentation == "none":
        return []
    if augmentation not in ("standard", "strong"):
        raise ValueError(f"unknown augmentation {augmentation!r}")
    out = [
        layers.RandomFlip("horizontal", name="flip"),
        layers.RandomRotation(0.02, name="rotation"),
        layers.RandomZoom(0.2, 0.2, name="zoom"),
    ]
    if augmentation == "strong":
        out += [
            layers.RandomTranslation(0.1, 0.1, name="translation"),
            layers.RandomContrast(0.2, name="contrast"),
        ]
    return out


def conv_stem(x, channels, name="stem"):
    """Hybrid stem: per entry of ``channels``, a 3x3 stride-2 convolution, batch norm, ReLU.
    Returns the feature map flattened to tokens (B, H' * W', channels[-1])."""
    for i, c in enumerate(channels):
        x = layers.Conv2D(int(c), 3, strides=2, padding="same", use_bias=False,
                          name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return layers.Reshape((x.shape[1] * x.shape[2], x.shape[3]), name=f"{name}_tokens")(x)


def build_vit(num_classes, image_size, patch_size, projection_dim=64, num_heads=4,
              transformer_layers=8, mlp_head_units=(2048, 1024), dropout=0.1,
              head_dropout=0.5, stochastic_depth_rate=0.0, augmentation="standard",
              mean=None, variance=None, stem_channels=None, name="vit") -> keras.Model:
    """keras.io ViT. Input: float images (image_size, image_size, 3), values 0..255.

    ``mean``/``variance`` (per channel, 0..255 scale, from the training set)
    select ``Normalization``; otherwise pixels are rescaled by 1/255.
    ``stochastic_depth_rate`` is the drop-path rate of the last block; block i
    uses ``rate * i / (transformer_layers - 1)`` (linear, first block 0).
    ``stem_channels`` (a list of ints) makes it a hybrid: :func:`conv_stem` instead of
    :class:`Patches`; each token then covers ``2 ** len(stem_channels)`` pixels a side,
    which must equal ``patch_size`` and divide ``image_size``.
    """
    if stem_channels:
        if 2 ** len(stem_channels) != patch_size or image_size % patch_size:
            raise ValueError(
                f"stem_channels {list(stem_channels)} give tokens of {2 ** len(stem_channels)} "
                f"px, but patch_size is {patch_size} and image_size {image_size}: use "
                f"patch_size = 2 ** len(stem_channels), dividing image_size")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    # Augment on raw 0..255 pixels, then normalise: Keras' colour layers (RandomContrast)
    # clip to value_range=(0, 255), which would cut every negative normalised value in
    # training only and make training and test inputs differ.
    x = inputs
    for layer in augmentation_layers(augmentation):
        x = layer(x)
    if mean is not None and variance is not None:
        x = layers.Normalization(mean=mean, variance=variance, name="normalize")(x)
    else:
        x = layers.Rescaling(1.0 / 255, name="rescale")(x)
    x = conv_stem(x, stem_channels) if stem_channels else Patches(patch_size, name="patches")(x)
    x = PatchEncoder(num_patches(image_size, patch_size), projection_dim, name="encoder")(x)
    for i in range(transformer_layers):
        rate = stochastic_depth_rate * i / max(transformer_layers - 1, 1)
        drop = StochasticDepth(rate, name=f"block{i}_droppath") if rate > 0 else (lambda t: t)
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(x)
        h = layers.MultiHeadAttention(num_heads, projection_dim, dropout=dropout,
                                      name=f"block{i}_attention")(h, h)
        x = layers.Add(name=f"block{i}_add1")([drop(h), x])
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(x)
        h = _mlp(h, [projection_dim * 2, projection_dim], dropout, f"block{i}_mlp")
        x = layers.Add(name=f"block{i}_add2")([drop(h), x])
    x = layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    x = layers.Dropout(head_dropout, name="head_dropout")(x)
    x = _mlp(x, mlp_head_units, head_dropout, "head")
    # float32 logits keep the softmax/loss stable under mixed_float16.
    outputs = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def require_backend(name: str) -> None:
    """Fail clearly when Keras runs on another backend than the notebook's parameter asks
    (KERAS_BACKEND is read only when Keras is first imported in the process)."""
    if keras.backend.backend() != name:
        raise RuntimeError(
            f"keras_backend is {name!r} but Keras already runs on "
            f"{keras.backend.backend()!r} in this kernel: restart the kernel, or set "
            f"keras_backend to {keras.backend.backend()!r}")


def configure_threads(torch_threads: int | None) -> int | None:
    """Set the torch backend's intra-op threads (``None``: leave torch's default, one per
    core). On a small CPU box, augmenting in the tf.data pipeline needs a core of its own:
    with torch on both cores of a 2-core machine, the two fight and some epochs take twice
    as long; with one torch thread they do not (96 px hybrid, "strong" augmentation, batch
    64, epochs of 60 steps on 2 cores: 424 to 943 ms a step with two threads, 253 to 369
    with one). Returns the thread count torch uses, or None on another backend."""
    if keras.backend.backend() != "torch":
        return None
    import torch

    if torch_threads is not None:
        if int(torch_threads) < 1:
            raise ValueError(f"torch_threads must be a positive integer or None, "
                             f"got {torch_threads!r}")
        torch.set_num_threads(int(torch_threads))
    return torch.get_num_threads()


def configure_precision(use_mixed: bool) -> str:
    """Set the global policy ('mixed_float16' on GPU if asked, else 'float32')."""
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    return keras.mixed_precision.global_policy().name


def make_optimizer(learning_rate=1e-3, weight_decay=1e-4, total_steps=None, warmup_steps=0,
                   schedule="constant"):
    """AdamW; ``schedule="cosine"``: linear warmup to ``learning_rate`` over
    ``warmup_steps`` then cosine decay to 0 at ``total_steps``."""
    if schedule == "cosine":
        if not total_steps:
            raise ValueError("schedule='cosine' needs total_steps")
        warmup_steps = int(warmup_steps)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=max(int(total_steps) - warmup_steps, 1),
            warmup_target=learning_rate,
            warmup_steps=warmup_steps,
        )
    elif schedule != "constant":
        raise ValueError(f"unknown schedule {schedule!r}")
    return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy from logits on integer labels, with label smoothing:
    the labels are one-hot encoded inside the loss (Keras 3
    ``SparseCategoricalCrossentropy`` has no ``label_smoothing``)."""

    def __init__(self, label_smoothing=0.0, name="sparse_smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        one_hot = ops.one_hot(y_true, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            one_hot, y_pred, from_logits=True, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def compile_vit(model, optimizer, label_smoothing=0.0, jit_compile="auto"):
    """Compile for 0-based integer labels; metrics 'accuracy', 'top5_accuracy'.

    ``jit_compile="auto"`` keeps Keras' rule: XLA only on an accelerator and
    only if every layer supports it (RandomRotation/RandomZoom do not, so a
    model with augmentation "standard"/"strong" runs without XLA). On CPU XLA
    is slower here (benchmarks/bench_vit.py), so "auto" means no XLA on CPU.
    ``jit_compile=True`` on the torch backend means ``torch.compile``.
    """
    if label_smoothing > 0:
        loss = SparseSmoothedCrossentropy(label_smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    k = min(5, int(model.output_shape[-1]))
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=k, name="top5_accuracy"),
        ],
        jit_compile=jit_compile,
    )
    return model


class ThroughputCallback(keras.callbacks.Callback):
    """Training throughput in images/s and total ``fit`` wall time.

    Per epoch the training time runs from the epoch start to the end of its
    last batch (validation is excluded). When there is more than one epoch the
    first one (graph tracing / XLA compilation) is left out of the rate.
    """

    def __init__(self, num_train_images: int):
        super().__init__()
        self.num_train_images = int(num_train_images)
        self.epoch_seconds: list[float] = []
        self.train_seconds = 0.0

    def on_train_begin(self, logs=None):
        self._t_fit = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._t_epoch = self._t_last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if logs and "loss" in logs:
            float(logs["loss"])  # wait for the step to finish (async backends)
        self._t_last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(self._t_last - self._t_epoch)

    def on_train_end(self, logs=None):
        self.train_seconds = time.perf_counter() - self._t_fit

    @property
    def images_per_second(self) -> float:
        secs = self.epoch_seconds[1:] if len(self.epoch_seconds) > 1 else self.epoch_seconds
        return self.num_train_images * len(secs) / max(sum(secs), 1e-9)


def make_dataset(x, y, batch_size, shuffle=False, seed=0, augmentation="none"):
    """tf.data pipeline: uint8 -> float32, batched, augmented, prefetched.

    ``augmentation`` ("none", "standard", "strong") applies :func:`augmentation_layers`
    per batch in a ``map``, so it runs on a tf.data thread, beside the training step,
    whatever the Keras backend, and reproducibly after ``keras.utils.set_random_seed``
    (Keras runs its preprocessing layers with TensorFlow inside tf.data; they are called
    one by one, not through a ``Sequential``, which would run on the backend). A tf.data
    dataset feeds ``fit`` on every backend.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda a, b: (tf.cast(a, tf.float32), b),
                                  num_parallel_calls=tf.data.AUTOTUNE)
    steps = augmentation_layers(augmentation)
    if steps:
        def augment(a, b):
            for layer in steps:
                a = layer(a, training=True)
            return a, b

        # one call at a time: the random layers draw from their seed generators in batch
        # order, so a seed gives the same images on every run (parallel calls would draw in
        # a racing order); prefetch still overlaps it with the training step
        ds = ds.map(augment)
    return ds.prefetch(tf.data.AUTOTUNE)


class BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` on the best ``val_accuracy``, among the epochs from
    ``first_epoch`` (1-based) on only."""

    def __init__(self, path, first_epoch: int = 1):
        super().__init__(path, monitor="val_accuracy", save_best_only=True, mode="max")
        self.first_epoch = int(first_epoch)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.first_epoch:
            super().on_epoch_end(epoch, logs)


def train(model, x_train, y_train, x_val, y_val, *, epochs, batch_size, checkpoint_path,
          label_smoothing=0.0, verbose=1, seed=0, augmentation="none",
          select_from_epoch=1) -> dict:
    """Fit a compiled Keras classifier (the ViT, or any model with an 'accuracy' metric),
    keep the best epoch by val_accuracy, return its numbers.

    ``select_from_epoch`` (1-based): the best epoch is chosen among the epochs from this one
    on (with a warmup + cosine schedule, the early high-learning-rate epochs are not meant
    as final models, and on a small validation split one lucky epoch there can win).

    Training batches come from :func:`make_dataset`, augmented there with
    ``augmentation`` (the model itself is then built with ``augmentation="none"``).
    ``label_smoothing`` is applied by ``compile_vit``; here it only recompiles
    when the model was compiled without it. Returns a dict with "history",
    "best_val_accuracy", "best_epoch" (1-based), "train_seconds",
    "train_images_per_second", "model".
    """
    if label_smoothing > 0 and not isinstance(model.loss, SparseSmoothedCrossentropy):
        compile_vit(model, model.optimizer, label_smoothing, jit_compile=model.jit_compile)
    throughput = ThroughputCallback(len(x_train))
    first = int(select_from_epoch)
    if not 1 <= first <= epochs:
        raise ValueError(f"select_from_epoch must be between 1 and epochs ({epochs}), "
                         f"got {select_from_epoch}")
    callbacks = [BestCheckpoint(checkpoint_path, first), throughput]
    train_ds = make_dataset(x_train, y_train, batch_size, shuffle=True, seed=seed,
                            augmentation=augmentation)
    val_ds = make_dataset(x_val, y_val, batch_size)
    hist = model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks,
                     shuffle=False, verbose=verbose)  # already shuffled by tf.data
    keys = ("loss", "val_loss", "accuracy", "val_accuracy", "top5_accuracy",
            "val_top5_accuracy")
    history = {k: [float(v) for v in hist.history[k]] for k in keys if k in hist.history}
    best = keras.saving.load_model(checkpoint_path, safe_mode=True)
    return {
        "history": history,
        "best_val_accuracy": max(history["val_accuracy"][first - 1:]),
        "best_epoch": first + int(np.argmax(history["val_accuracy"][first - 1:])),
        "train_seconds": throughput.train_seconds,
        "train_images_per_second": throughput.images_per_second,
        "model": best,
    }


# --------------------------------------------------------------------------- one run of a sweep

def with_new_head(model: keras.Model, num_classes: int, name: str | None = None) -> keras.Model:
    """The same network with a fresh ``logits`` layer for ``num_classes`` classes: every
    other layer (and its weights) is shared with ``model``."""
    features = model.get_layer("logits").input
    outputs = layers.Dense(num_classes, dtype="float32", name="logits")(features)
    return keras.Model(model.input, outputs, name=name or model.name)


def _build_from_config(cfg: dict, num_classes: int, pixels: np.ndarray, augmentation: str,
                       name: str) -> keras.Model:
    """:func:`build_vit` from a sweep configuration; normalisation from ``pixels`` (N, 3)."""
    return build_vit(num_classes, int(cfg["image_size"]), int(cfg["patch_size"]),
                     projection_dim=cfg.get("projection_dim", 64),
                     num_heads=cfg.get("num_heads", 4),
                     transformer_layers=cfg.get("transformer_layers", 8),
                     mlp_head_units=tuple(cfg.get("mlp_head_units", (2048, 1024))),
                     dropout=cfg.get("dropout", 0.1), head_dropout=cfg.get("head_dropout", 0.5),
                     stochastic_depth_rate=cfg.get("stochastic_depth_rate", 0.0),
                     augmentation=augmentation, mean=pixels.mean(axis=0),
                     variance=pixels.var(axis=0), stem_channels=cfg.get("stem_channels"),
                     name=name)


def _optimizer_for(settings: dict, epochs: int, steps_per_epoch: int):
    return make_optimizer(settings.get("learning_rate", 1e-3),
                          settings.get("weight_decay", 1e-4),
                          total_steps=epochs * steps_per_epoch,
                          warmup_steps=settings.get("warmup_epochs", 0) * steps_per_epoch,
                          schedule=settings.get("schedule", "constant"))


def pretrain(cfg: dict, table, *, seed: int = 0, verbose: int = 2,
             cache=True) -> tuple[keras.Model, dict]:
    """Train the network of ``cfg`` on ``table`` (other classes, see
    :func:`common.data.other_classes`), as the first stage of a configuration with a
    ``pretrain`` entry.

    ``cfg["pretrain"]`` holds ``epochs`` and optionally ``batch_size``, ``learning_rate``,
    ``warmup_epochs``, ``weight_decay`` and ``schedule`` (default: those of ``cfg``); the
    architecture, crop, augmentation and label smoothing are those of ``cfg``. There is no
    validation: the last epoch is kept. Returns the model (its own ``logits`` layer, one
    output per pretraining class) and a record: ``classes``, ``images``, ``epochs``,
    ``seconds``, ``images_per_second`` and ``history`` (``loss``, ``accuracy``).
    """
    from common import images

    settings = {**cfg, **cfg["pretrain"]}
    size, mode = int(cfg["image_size"]), cfg.get("crop_mode", "squash")
    x, kept = images.load_images(table, size, mode, float(cfg.get("crop_margin", 0.1)),
                                 cache=cache)
    y = kept["label"].to_numpy()
    augmentation = cfg.get("augmentation", "standard")
    in_model = bool(cfg.get("augment_in_model", False))
    keras.utils.set_random_seed(seed)
    classes = int(kept["label"].nunique())
    model = _build_from_config(cfg, classes, x.reshape(-1, 3).astype("float64"),
                               augmentation if in_model else "none", f"{cfg['name']}_pretrain")
    epochs, batch = int(settings["epochs"]), int(settings["batch_size"])
    compile_vit(model, _optimizer_for(settings, epochs, -(-len(x) // batch)),
                cfg.get("label_smoothing", 0.0), cfg.get("jit_compile", "auto"))
    throughput = ThroughputCallback(len(x))
    batches = make_dataset(x, y, batch, shuffle=True, seed=seed,
                           augmentation="none" if in_model else augmentation)
    hist = model.fit(batches, epochs=epochs, callbacks=[throughput], verbose=verbose)
    return model, {"classes": classes, "images": len(x), "epochs": epochs,
                   "seconds": round(throughput.train_seconds, 2),
                   "images_per_second": round(throughput.images_per_second, 2),
                   "history": {k: [float(v) for v in hist.history[k]]
                               for k in ("loss", "accuracy")}}


def fit_config(cfg: dict, splits, *, labels: dict, model_dir, seed: int = 0, verbose: int = 2,
               cache=True, pretrain_table=None) -> tuple[dict, dict]:
    """Train and evaluate one configuration of a notebook's sweep; save its model folder.

    ``cfg`` holds ``name``, ``image_size``, ``patch_size``, ``epochs``, ``batch_size`` and
    optionally every other :func:`build_vit` / :func:`make_optimizer` argument, plus
    ``crop_mode`` (squash/center/bbox), ``crop_margin``, ``label_smoothing``,
    ``warmup_epochs``, ``schedule``, ``select_from_epoch`` (see :func:`train`),
    ``augment_in_model`` (augmentation layers inside the model rather than in the tf.data
    pipeline: for a GPU box) and ``pretrain`` (see :func:`pretrain`: the network is first
    trained on ``pretrain_table``, then gets a new head for ``labels`` and is trained on
    ``splits``).
    ``labels``: 0-based label -> (class id, name).
    Returns the run record of the results contract and the test arrays and probabilities.
    A pretrained run's record adds ``pretraining`` (see :func:`pretrain`), and its
    ``train_seconds`` counts both stages.
    """
    from pathlib import Path

    from common import images, predict, results

    size, mode = int(cfg["image_size"]), cfg.get("crop_mode", "squash")
    margin = float(cfg.get("crop_margin", 0.1))
    arrays = {k: images.load_images(getattr(splits, k), size, mode, margin, cache=cache)
              for k in ("train", "val", "test")}
    (x_tr, t_tr), (x_va, t_va), (x_te, t_te) = arrays["train"], arrays["val"], arrays["test"]
    augmentation = cfg.get("augmentation", "standard")
    in_model = bool(cfg.get("augment_in_model", False))
    pretraining, weights = None, "random-init"
    if cfg.get("pretrain"):
        if pretrain_table is None:
            raise ValueError(f"configuration {cfg['name']!r} has `pretrain` but no "
                             "pretrain_table was given (see common.data.other_classes)")
        base, pretraining = pretrain(cfg, pretrain_table, seed=seed, verbose=verbose,
                                     cache=cache)
        model = with_new_head(base, len(labels), name=cfg["name"])
        weights = (f"random-init, pretrained here on {pretraining['classes']} other classes "
                   f"({pretraining['images']} images, {pretraining['epochs']} epochs)")
        stats = "of the pretraining set (other classes)"
    else:
        keras.utils.set_random_seed(seed)
        model = _build_from_config(cfg, len(labels), x_tr.reshape(-1, 3).astype("float64"),
                                   augmentation if in_model else "none", cfg["name"])
        stats = "of the training set"
    epochs, batch = int(cfg["epochs"]), int(cfg["batch_size"])
    compile_vit(model, _optimizer_for(cfg, epochs, -(-len(x_tr) // batch)),
                cfg.get("label_smoothing", 0.0), cfg.get("jit_compile", "auto"))
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    out = train(model, x_tr, t_tr["label"].to_numpy(), x_va, t_va["label"].to_numpy(),
                epochs=epochs, batch_size=batch, checkpoint_path=model_dir / "model.keras",
                verbose=verbose, seed=seed,
                augmentation="none" if in_model else augmentation,
                select_from_epoch=cfg.get("select_from_epoch", 1))
    if pretraining:
        out["train_seconds"] += pretraining["seconds"]
    probs = probabilities(out["model"], x_te, batch)
    y_te = t_te["label"].to_numpy()
    predict.write_model_info(model_dir, labels, {
        "framework": "keras", "model_file": "model.keras", "image_size": size,
        "crop_mode": mode, "crop_margin": margin,
        "normalisation": f"inside the model: Normalization with the per-channel mean and "
                         f"variance {stats}; input RGB pixels 0..255"})
    run = results.run_record(cfg["name"], cfg, weights, y_te, probs, out, model_dir)
    if pretraining:
        run["pretraining"] = pretraining
    return run, {"x": x_te, "y": y_te, "probs": probs, "table": t_te}


def probabilities(model, x, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities of a Keras model that outputs logits, for uint8 images."""
    logits = np.asarray(model.predict(x.astype("float32"), batch_size=batch_size, verbose=0),
                        dtype="float64")
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
