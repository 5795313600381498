"""Vision Transformer (ViT) for Stanford Cars, after the keras.io example
"Image classification with Vision Transformer" (Khalid Salama), in Keras 3: the model only.

Layers use ``keras.ops`` only, so the model runs on the tensorflow and torch
backends. Differences from the keras.io example, as the 2022 study asks:
the encoder output goes through LayerNormalization + GlobalAveragePooling1D
(the example flattens it), normalisation lives inside the model (a saved model
takes raw 0..255 RGB), and an optional stochastic depth (drop path) follows
"How to train your ViT?" (Steiner et al., 2021). Augmentation layers are inside the model
only when asked (``augmentation.in_model``); otherwise the input pipeline of
:mod:`common.training.keras_fit` applies them.

``stem_channels`` turns it into a hybrid ViT, as the "R+ViT" models of that paper: a few
stride-2 convolutions (3x3, batch norm, ReLU) replace the cut into patches, and each cell of
the final feature map becomes a token; the transformer part is unchanged.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from common.models.augmentation import PACKAGE, augmentation_layers


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


def mlp(x, units, dropout, prefix):
    """keras.io's MLP: per entry of ``units``, a GELU Dense layer and dropout."""
    for i, u in enumerate(units):
        x = layers.Dense(u, activation=keras.activations.gelu, name=f"{prefix}_dense{i}")(x)
        x = layers.Dropout(dropout, name=f"{prefix}_dropout{i}")(x)
    return x


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNorm(layers.BatchNormalization):
    """Keras' ``BatchNormalization`` (the same weights, statistics and results), in one
    fused kernel on the torch backend. Keras computes it there op by op: the batch's
    moments, then subtract, multiply and add, each over the whole feature map and each
    again in the backward pass; on the stem's 48x48 maps that made 01's training step about
    a quarter slower on two CPU cores (``make bench``). Here
    ``torch.nn.functional.batch_norm`` normalises, and the moving statistics follow Keras'
    rule (biased variance), in float32 whatever the precision of the maps. Other backends,
    and the cases it does not cover (a mask, renorm, another axis), run Keras' own code."""

    def call(self, inputs, training=None, mask=None):
        last = len(inputs.shape) - 1
        if (keras.backend.backend() != "torch" or mask is not None or self.renorm
                or self.axis % len(inputs.shape) != last or not (self.center and self.scale)):
            return super().call(inputs, training=training, mask=mask)
        import torch
        import torch.nn.functional as F

        # (N, C, ...): a view, channels last in memory. Under mixed precision the maps stay
        # in bf16 (torch accumulates the moments in float32 and keeps float32 statistics;
        # Keras casts each map to float32 and back, two more passes over it)
        x = torch.movedim(inputs, -1, 1)
        train = bool(training) and self.trainable
        mean, var = self.moving_mean.value, self.moving_variance.value
        if train:  # the batch's moments (momentum 1: the buffers receive them as they are)
            mean, var = torch.zeros_like(mean), torch.ones_like(var)
        out = F.batch_norm(x, mean, var, self.gamma.value, self.beta.value, training=train,
                           momentum=1.0, eps=self.epsilon)
        if train:
            n = x.numel() // x.shape[1]
            var = var * ((n - 1) / n)  # torch keeps the unbiased variance, Keras the biased
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + var * (1.0 - m))
        return torch.movedim(out, 1, -1)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Keras' (and TensorFlow's) "same" padding of one axis: (before, after)."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@keras.saving.register_keras_serializable(package=PACKAGE)
class Conv2D(layers.Conv2D):
    """Keras' ``Conv2D`` (the same weights and results), computed on the torch backend on
    channels-last maps. Keras' torch convolution copies each input to channels-last memory
    and, where "same" padding is uneven (a stride-2 convolution of an even-sized map pads
    one row and one column, after), pads it with a second copy into channels-first memory,
    which the convolution then converts back; on the stem's 48x48 maps these copies took
    about a tenth of 01's training step on two CPU cores (``make bench``). Here the map is
    made channels last once (a no-op from the second convolution on, whose input is the
    previous one's output), padded in that layout when the padding is uneven, and convolved
    by ``torch.nn.functional.conv2d``. Other backends, and what it does not cover (dilation,
    groups, channels first), run Keras' own code."""

    def convolution_op(self, inputs, kernel):
        if (keras.backend.backend() != "torch" or self.data_format != "channels_last"
                or self.groups != 1 or any(d != 1 for d in self.dilation_rate)):
            return super().convolution_op(inputs, kernel)
        import torch
        import torch.nn.functional as F

        x = torch.movedim(inputs, -1, 1).contiguous(memory_format=torch.channels_last)
        padding = [0, 0]
        if self.padding == "same":
            (top, bottom), (left, right) = (
                _same_padding(n, k, s) for n, k, s in
                zip(x.shape[2:], self.kernel_size, self.strides))
            if (top, left) == (bottom, right):
                padding = [top, left]
            else:
                x = F.pad(x, (left, right, top, bottom))  # keeps the channels-last layout
        kernel = ops.convert_to_tensor(kernel)  # under mixed precision: the compute dtype
        out = F.conv2d(x, kernel.permute(3, 2, 0, 1), stride=tuple(self.strides),
                       padding=padding)
        return torch.movedim(out, 1, -1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class MultiHeadAttention(layers.MultiHeadAttention):
    """Keras' ``MultiHeadAttention`` (the same weights and results, up to rounding), whose
    attention is computed plainly on torch on the CPU: two matrix products and a softmax
    in float32. Keras hands it to torch's ``scaled_dot_product_attention``, whose flash
    kernel tiles for long sequences and whose "math" kernel checks every row of the scores
    for a fully masked one; over the ViT's 36 tokens, unmasked, both cost 01's training
    step several percent on two cores (``make bench``). With a mask, attention scores asked
    for, dropout in training, another device or backend: Keras' own code, as
    ``_compute_attention``'s documentation invites."""

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, use_causal_mask=False):
        plain = (keras.backend.backend() == "torch" and attention_mask is None
                 and not return_attention_scores and not use_causal_mask
                 and not (training and self._dropout > 0) and len(query.shape) == 4
                 and query.device.type == "cpu")
        if not plain:
            return super()._compute_attention(
                query, key, value, attention_mask=attention_mask, training=training,
                return_attention_scores=return_attention_scores,
                use_causal_mask=use_causal_mask)
        import torch

        # (B, T, heads, dim) -> (B, heads, T, dim): views
        q, k, v = (torch.movedim(t, 2, 1) for t in (query, key, value))
        scores = torch.matmul(q, k.transpose(-1, -2)) * self._inverse_sqrt_key_dim
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype)
        return torch.movedim(torch.matmul(weights, v), 1, 2), None


def conv_stem(x, channels, name="stem"):
    """Hybrid stem: per entry of ``channels``, a 3x3 stride-2 convolution, batch norm, ReLU.
    Returns the feature map flattened to tokens (B, H' * W', channels[-1])."""
    for i, c in enumerate(channels):
        x = Conv2D(int(c), 3, strides=2, padding="same", use_bias=False,
                   name=f"{name}_conv{i}")(x)
        x = BatchNorm(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return layers.Reshape((x.shape[1] * x.shape[2], x.shape[3]), name=f"{name}_tokens")(x)


def build_vit(network, augmentation, num_classes: int, stats: tuple | None = None,
              name: str = "vit") -> keras.Model:
    """The keras.io ViT of one run's ``network`` group (a
    :class:`common.config.schema.VitNetwork`, which declares every default and checks the
    shapes: a stem's tokens are ``patch_size`` px), with its ``augmentation`` group's layers
    inside the model when ``in_model`` (a :class:`common.config.schema.VitAugmentation`).
    Input: float images (image_size, image_size, 3), values 0..255.

    ``stats`` (per-channel mean and variance, 0..255 scale, from the training set) selects
    ``Normalization``; otherwise pixels are rescaled by 1/255. Block i's drop-path rate is
    ``network.drop_path_rate(i)`` (linear, first block 0). ``stem_channels`` makes it a
    hybrid (:func:`conv_stem` instead of :class:`Patches`). Notebook 01 writes this same
    network out in its own cell.
    """
    net = network
    inputs = keras.Input((net.image_size, net.image_size, 3), name="image")
    # Augment on raw 0..255 pixels, then normalise: Keras' colour layers (RandomContrast)
    # clip to value_range=(0, 255), which would cut every negative normalised value in
    # training only and make training and test inputs differ.
    x = inputs
    for layer in augmentation_layers(augmentation.model_level):
        x = layer(x)
    if stats is not None:
        x = layers.Normalization(mean=stats[0], variance=stats[1], name="normalize")(x)
    else:
        x = layers.Rescaling(1.0 / 255, name="rescale")(x)
    if net.stem_channels:
        x = conv_stem(x, net.stem_channels)
    else:
        x = Patches(net.patch_size, name="patches")(x)
    x = PatchEncoder(num_patches(net.image_size, net.patch_size), net.projection_dim,
                     name="encoder")(x)
    for i in range(net.transformer_layers):
        rate = net.drop_path_rate(i)
        drop = StochasticDepth(rate, name=f"block{i}_droppath") if rate > 0 else (lambda t: t)
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(x)
        h = MultiHeadAttention(net.num_heads, net.head_dim, dropout=net.dropout,
                               name=f"block{i}_attention")(h, h)
        x = layers.Add(name=f"block{i}_add1")([drop(h), x])
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(x)
        h = mlp(h, [net.projection_dim * 2, net.projection_dim], net.dropout, f"block{i}_mlp")
        x = layers.Add(name=f"block{i}_add2")([drop(h), x])
    x = layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    x = layers.Dropout(net.head_dropout, name="head_dropout")(x)
    x = mlp(x, net.mlp_head_units, net.head_dropout, "head")
    # float32 logits keep the softmax/loss stable under mixed precision.
    outputs = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def with_new_head(model: keras.Model, num_classes: int, name: str | None = None,
                  rows: list[int] | None = None) -> keras.Model:
    """The same network with a fresh ``logits`` layer for ``num_classes`` classes: every
    other layer (and its weights) is shared with ``model``. ``rows``: the new layer starts
    from ``model``'s output units ``rows`` (one per new class, in order) instead of random
    weights: the same classes keep the scores they had."""
    features = model.get_layer("logits").input
    head = layers.Dense(num_classes, dtype="float32", name="logits")
    outputs = head(features)
    if rows is not None:
        if len(rows) != num_classes:
            raise ValueError(f"rows gives {len(rows)} output units for {num_classes} classes")
        kernel, bias = model.get_layer("logits").get_weights()
        head.set_weights([kernel[:, list(rows)], bias[list(rows)]])
    return keras.Model(model.input, outputs, name=name or model.name)
