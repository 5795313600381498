"""Training Keras classifiers: input pipeline and its augmentation, optimizer, loss,
callbacks and the generic :func:`train` loop.

Used by the from-scratch ViT (:mod:`common.training.vit_runs`) and by EfficientNet
(:mod:`common.training.efficientnet_stages`). Everything here works on the tensorflow and
torch backends of Keras 3. Augmentation runs in the input pipeline: on tensorflow,
Keras' random layers in a tf.data thread beside the training step; on torch, the same
transformations with kornia, batch by batch in the training loop (Keras' geometric layers
take about 100 ms each per batch of 64 96-px images on torch, kornia's single affine warp
about 6 ms). A configuration
can also ask for Keras' layers inside the model (``augment_in_model``). Mixup and CutMix
(:mod:`common.training.mixing`) come last in the pipeline, and make the labels soft.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
from keras import ops

from common.core.accelerators import describe
from common.models.augmentation import PACKAGE, augmentation_layers
from common.training.batch_augmentation import augmentation_kornia
from common.training.callbacks import BestCheckpoint, EpochLog, ThroughputCallback
from common.training.mixing import mix_batch, mix_tensor


@keras.saving.register_keras_serializable(package=PACKAGE)
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to ``peak`` over ``warmup_steps``, then linear decay to 0 at
    ``total_steps`` (the budget-aware schedule of Li et al., *Budgeted Training*, 2020)."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0):
        self.peak, self.total_steps = float(peak), int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = step / max(self.warmup_steps, 1)
        decay = (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        return self.peak * ops.clip(ops.minimum(warm, decay), 0.0, 1.0)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}


SCHEDULES = ("constant", "cosine", "linear")


def make_optimizer(optimiser, epochs: int, steps_per_epoch: int):
    """AdamW for one run's ``optimiser`` group (a
    :class:`common.config.schema.VitOptimiser`, which declares the defaults): its
    ``learning_rate``, ``weight_decay`` and ``schedule`` over ``epochs`` of
    ``steps_per_epoch`` steps. "constant"; "cosine", a linear warmup to ``learning_rate``
    over ``warmup_epochs`` then a cosine decay to 0 at the end; "linear", the same warmup
    then a linear decay to 0 at the end. ``ema_momentum``: the optimizer also keeps an
    exponential moving average of the weights (``use_ema``), which :func:`train` validates
    and saves. (``label_smoothing``, the group's loss setting, goes to
    :func:`compile_classifier`.)"""
    opt = optimiser
    total, warmup = epochs * steps_per_epoch, opt.warmup_epochs * steps_per_epoch
    learning_rate = opt.learning_rate
    if opt.schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0, decay_steps=max(total - warmup, 1),
            warmup_target=opt.learning_rate, warmup_steps=warmup)
    elif opt.schedule == "linear":
        learning_rate = WarmupLinearDecay(opt.learning_rate, total, warmup)
    ema = ({} if opt.ema_momentum is None
           else {"use_ema": True, "ema_momentum": float(opt.ema_momentum)})
    return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=opt.weight_decay,
                                  **ema)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy from logits on integer labels, with label smoothing:
    the labels are one-hot encoded inside the loss (Keras 3
    ``SparseCategoricalCrossentropy`` has no ``label_smoothing``). Soft labels (one row of
    class shares per image, from mixup or CutMix) are taken as they are."""

    def __init__(self, label_smoothing=0.0, name="sparse_smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        if _soft(y_true, y_pred):
            one_hot = ops.cast(y_true, y_pred.dtype)
        else:
            y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
            one_hot = ops.one_hot(y_true, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            one_hot, y_pred, from_logits=True, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def _soft(y_true, y_pred) -> bool:
    """Whether ``y_true`` holds soft labels (N, classes) rather than integer labels."""
    classes = y_pred.shape[-1]
    return len(y_true.shape) == 2 and classes not in (None, 1) and y_true.shape[-1] == classes


def _hard(y_true, y_pred):
    return ops.argmax(y_true, axis=-1) if _soft(y_true, y_pred) else y_true


@keras.saving.register_keras_serializable(package=PACKAGE)
class LabelAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Top-1 accuracy on integer labels, or on soft labels' largest share (mixup, CutMix)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(_hard(y_true, y_pred), y_pred, sample_weight)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LabelTopKAccuracy(keras.metrics.SparseTopKCategoricalAccuracy):
    """Top-k accuracy on integer labels, or on soft labels' largest share."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(_hard(y_true, y_pred), y_pred, sample_weight)


def static_shapes(jit_compile) -> None:
    """Before compiling a Keras model with ``jit_compile=True`` on torch (torch.compile):
    static shapes. Keras' step sees the full batches and the last one; dynamic shapes trip
    inductor on a convolution's backward (torch 2.13, "ValueRangeError: Invalid ranges
    [0:-1]")."""
    if jit_compile is True and keras.backend.backend() == "torch":
        import torch._dynamo

        torch._dynamo.config.automatic_dynamic_shapes = False
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)


def compile_classifier(model, optimizer, label_smoothing=0.0, jit_compile="auto",
                       soft_labels=False):
    """Compile for 0-based integer labels; metrics 'accuracy', 'top5_accuracy'.
    ``soft_labels``: training batches may carry soft labels (mixup, CutMix; validation
    keeps integer labels), which the loss and the metrics then read too.

    ``jit_compile="auto"`` keeps Keras' rule: XLA only on an accelerator and
    only if every layer supports it (RandomRotation/RandomZoom do not, so a
    model with augmentation "standard"/"strong" runs without XLA). On CPU XLA
    is slower here (benchmarks/bench_vit.py), so "auto" means no XLA on CPU.
    ``jit_compile=True`` on the torch backend means ``torch.compile``.
    """
    if label_smoothing > 0 or soft_labels:
        loss = SparseSmoothedCrossentropy(label_smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    static_shapes(jit_compile)
    k = min(5, int(model.output_shape[-1]))
    top1, topk = ((LabelAccuracy, LabelTopKAccuracy) if soft_labels else
                  (keras.metrics.SparseCategoricalAccuracy,
                   keras.metrics.SparseTopKCategoricalAccuracy))
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=[top1(name="accuracy"), topk(k=k, name="top5_accuracy")],
        jit_compile=jit_compile,
    )
    return model


def make_dataset(x, y, batch_size, shuffle=False, seed=0, augmentation="none", mix=None):
    """Batches for ``fit``: uint8 -> float32, shuffled each epoch, augmented, mixed.

    On the tensorflow backend, a tf.data pipeline: ``augmentation`` ("none", "standard",
    "strong") applies :func:`augmentation_layers` per batch in a ``map``, on a tf.data
    thread beside the training step. On any other backend (torch), a
    ``keras.utils.PyDataset`` (:class:`Batches`) that applies the same layers per batch, on
    the backend, in the training loop: nothing imports TensorFlow. Either way a seed
    (``keras.utils.set_random_seed``) gives the same batches on every run.

    ``mix``: ``{"num_classes", "mixup_alpha", "cutmix_alpha"}`` for
    :func:`common.training.mixing.mix_batch`, applied to each augmented batch (labels soft,
    one row of class shares per image); ``None``: integer labels.
    """
    if keras.backend.backend() != "tensorflow":
        return Batches(x, y, batch_size, shuffle=shuffle, seed=seed, augmentation=augmentation,
                       mix=mix)
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
    if mix:
        classes = int(mix["num_classes"])

        def mixed(draw, batch):
            def numpy_mix(a, b, d):
                return _mix(a, b, np.random.default_rng(int(d)), mix)

            a, b = tf.numpy_function(numpy_mix, [batch[0], batch[1], draw],
                                     (tf.float32, tf.float32))
            a.set_shape(batch[0].shape)
            b.set_shape([None, classes])
            return a, b

        # one draw per batch, new each epoch, the same on every run for a seed
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(draws, ds).map(mixed)
    return ds.prefetch(tf.data.AUTOTUNE)


def _mix(x, y, rng, mix: dict, apply=mix_batch):
    """``mix`` (:func:`make_dataset`'s) applied to a batch by ``apply``: :func:`mix_batch`
    (numpy, channels last) or :func:`mix_tensor` (torch, channels first)."""
    return apply(x, y, int(mix["num_classes"]), rng,
                 mixup_alpha=float(mix.get("mixup_alpha", 0.0)),
                 cutmix_alpha=float(mix.get("cutmix_alpha", 0.0)))


class Batches(keras.utils.PyDataset):
    """Shuffled, augmented float32 batches of uint8 images, for the backends other than
    tensorflow; augmented by :func:`augmentation_kornia`. Batches are made in order in the
    training loop (no worker); the shuffle of epoch ``e`` comes from ``seed + e``, the random
    transformations of its batch ``i`` from ``(seed, e, i)``, and so does its mixing
    (``mix``, as in :func:`make_dataset`): the same batches on every run.

    Batches are made on torch, channels first: made float, warped and mixed
    (:func:`common.training.mixing.mix_tensor`) in that layout. On the torch backend a
    batch is handed to the model as a view of shape (N, H, W, C) whose memory stays channels
    first, so the model's normalisation works on it without a copy: on 01's recipe,
    normalising a channels-last batch in bf16 took about ten times as long (a torch profile
    of its step; ``make bench`` times the whole path against the channels-last one). The
    stem's first convolution then lays its three channels out last, once
    (:class:`common.models.vit.Conv2D`). On a GPU the
    batches are made there (the random draws stay on the CPU's generators, so a seed gives
    the same batches). On other backends, numpy arrays (N, H, W, C)."""

    def __init__(self, x, y, batch_size, shuffle=False, seed=0, augmentation="none", mix=None):
        import torch

        super().__init__(workers=1, use_multiprocessing=False)
        self.mix = mix
        self.x, self.y = x, np.asarray(y)
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.augment = augmentation_kornia(augmentation)
        self.torch = keras.backend.backend() == "torch"
        self.device = "cuda" if self.torch and torch.cuda.is_available() else "cpu"
        if self.augment is not None:
            self.augment = self.augment.to(self.device)
        self.epoch = 0
        self.order = self._order()

    def _order(self):
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng(self.seed + self.epoch).permutation(len(self.x))

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i):
        import torch

        pick = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        # (N, C, H, W), channels first in memory
        images = torch.from_numpy(self.x[pick]).to(self.device).permute(0, 3, 1, 2)
        if self.augment is None:
            images = images.contiguous().float()
        else:  # the draws of batch i of epoch e come from (seed, e, i) alone, and leave
            # torch's global generator (dropout's, the model's) as it was
            images = self.augment(images.float().div_(255.0),
                                  hash((self.seed, self.epoch, i)) & 0x7FFF_FFFF).mul_(255.0)
        labels = self.y[pick]
        if self.mix:
            images, labels = _mix(images, labels,
                                  np.random.default_rng([self.seed, self.epoch, i, 1]),
                                  self.mix, mix_tensor)
        images = images.permute(0, 2, 3, 1)
        return (images if self.torch else images.numpy()), labels

    def on_epoch_end(self):
        self.epoch += 1
        self.order = self._order()


def attention_kernel(model):
    """The context ``fit`` runs in: on torch on the CPU, torch's plain attention (matrix
    products and a softmax) instead of its flash kernel, which tiles for long sequences and
    made the ViT's attention over 36 tokens a tenth slower a training step on two cores
    (``make bench``); the results are the same up to rounding. Elsewhere, nothing. Our
    ViT's own attention layer (:class:`common.models.vit.MultiHeadAttention`) no longer
    calls that kernel on the CPU; Keras' layer, in a network saved before it, still does."""
    if keras.backend.backend() != "torch" or not model.weights:
        return contextlib.nullcontext()
    if getattr(model.weights[0].value, "device", None) is None or \
            model.weights[0].value.device.type != "cpu":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def train(model, x_train, y_train, x_val, y_val, *, epochs, batch_size, checkpoint_path,
          verbose=1, seed=0, augmentation="none",
          select_from_epoch=1, callbacks=None, mix=None) -> dict:
    """Fit a compiled Keras classifier (the ViT, or any model with an 'accuracy' metric),
    keep the best epoch by val_accuracy, return its numbers.

    ``select_from_epoch`` (1-based): the best epoch is chosen among the epochs from this one
    on (with a warmup + cosine schedule, the early high-learning-rate epochs are not meant
    as final models, and on a small validation split one lucky epoch there can win).

    Training batches come from :func:`make_dataset`, augmented there with
    ``augmentation`` (the model itself is then built with ``augmentation="none"``).
    ``mix``: mixup or CutMix of the training batches (:func:`make_dataset`; the model
    compiled with ``soft_labels``; label smoothing is the compiled loss's). An optimizer
    with ``use_ema``: validation and the checkpoint use its average of the weights.
    ``callbacks``: more Keras callbacks, called after the checkpoint and the throughput
    ones. Returns a dict with "history",
    "best_val_accuracy", "best_epoch" (1-based), "checkpoint_rule" (the rule that chose it:
    highest val_accuracy from ``select_from_epoch`` on), "train_seconds",
    "train_images_per_second", "trained_on" (the Keras backend and the device its weights
    were on while training, e.g. ``{"tensorflow": "GPU:0 (NVIDIA H200)"}``), "model".
    """
    throughput = ThroughputCallback(len(x_train))
    first = int(select_from_epoch)
    if not 1 <= first <= epochs:
        raise ValueError(f"select_from_epoch must be between 1 and epochs ({epochs}), "
                         f"got {select_from_epoch}")
    callbacks = [BestCheckpoint(checkpoint_path, first), throughput, *(callbacks or [])]
    if getattr(model.optimizer, "use_ema", False):
        # the averaged weights are validated, and are in the model at each epoch's end when
        # the checkpoint is taken (Keras' callback, first in the list)
        callbacks.insert(0, keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    train_ds = make_dataset(x_train, y_train, batch_size, shuffle=True, seed=seed,
                            augmentation=augmentation, mix=mix)
    val_ds = make_dataset(x_val, y_val, batch_size)
    if verbose == 2:  # a line an epoch, without the progress bar's wait after every step
        callbacks.append(EpochLog(epochs))
    with attention_kernel(model):
        hist = model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks,
                         shuffle=False, verbose=0 if verbose == 2 else verbose)  # shuffled above
    keys = ("loss", "val_loss", "accuracy", "val_accuracy", "top5_accuracy",
            "val_top5_accuracy")
    history = {k: [float(v) for v in hist.history[k]] for k in keys if k in hist.history}
    device = describe(getattr(model.weights[0].value, "device", "cpu"))
    best = keras.saving.load_model(checkpoint_path, safe_mode=True)
    return {
        "history": history,
        "best_val_accuracy": max(history["val_accuracy"][first - 1:]),
        "best_epoch": first + int(np.argmax(history["val_accuracy"][first - 1:])),
        "checkpoint_rule": {"metric": "val_accuracy", "from_epoch": first},
        "train_seconds": throughput.train_seconds,
        "train_images_per_second": throughput.images_per_second,
        "epoch_seconds": list(throughput.epoch_seconds),
        "trained_on": {keras.backend.backend(): device},
        "model": best,
    }
