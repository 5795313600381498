"""The faster training path on torch (issue 34) computes what the slower one did: the fused
batch norm as Keras' own, the stem's channels-last convolution as Keras' own, the one-warp
flip and affine as kornia's modules, plain attention as Keras' and as the flash kernel.
Keras runs on torch in a child process (this suite's Keras is on tensorflow)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from common.training.batch_augmentation import FlipAffine, augmentation_kornia

TORCH_KERAS = textwrap.dedent("""
    import os, sys
    os.environ["KERAS_BACKEND"] = "torch"
    import keras, numpy as np, torch
    from common.models import vit
    from common.training import keras_fit

    # the fused batch norm: Keras' outputs, gradients and moving statistics
    x = np.random.default_rng(0).normal(3, 2, (8, 6, 6, 5)).astype("float32")
    theirs, mine = keras.layers.BatchNormalization(momentum=0.9), vit.BatchNorm(momentum=0.9)
    for layer in (theirs, mine):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2, 5))
        layer.beta.assign(np.linspace(-1, 1, 5))
    for training in (True, True, False):
        xa, xb = (torch.tensor(x, requires_grad=True) for _ in range(2))
        ya, yb = theirs(xa, training=training), mine(xb, training=training)
        (ya ** 2).sum().backward()
        (yb ** 2).sum().backward()
        np.testing.assert_allclose(yb.detach().numpy(), ya.detach().numpy(), atol=1e-5)
        np.testing.assert_allclose(xb.grad.numpy(), xa.grad.numpy(), atol=1e-4)
        for name in ("moving_mean", "moving_variance"):
            np.testing.assert_allclose(getattr(mine, name).numpy(),
                                       getattr(theirs, name).numpy(), rtol=1e-5)
    assert not np.allclose(mine.moving_mean.numpy(), 0)  # the statistics moved
    # the hybrid stem uses it, and a saved network reloads with it
    from common.config.schema import KerasVitRun

    cfg = KerasVitRun(name="t", network=dict(image_size=32, patch_size=8, projection_dim=16,
                                             num_heads=2, transformer_layers=1,
                                             mlp_head_units=[8], stem_channels=[4, 8, 8]))
    model = vit.build_vit(cfg.network, cfg.augmentation, 3)
    assert isinstance(model.get_layer("stem_bn0"), vit.BatchNorm)
    path = sys.argv[1] + "/m.keras"
    model.save(path)
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    again = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(again.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=1e-6)

    # the stem's convolution on channels-last maps: Keras' outputs and gradients, to the
    # bit, with even (uneven "same" padding) and odd sizes, strides 1 and 2
    for size, stride, padding in [(12, 2, "same"), (9, 2, "same"), (10, 1, "same"),
                                  (10, 2, "valid")]:
        theirs = keras.layers.Conv2D(5, 3, strides=stride, padding=padding)
        mine = vit.Conv2D(5, 3, strides=stride, padding=padding)
        x = np.random.default_rng(size).normal(size=(2, size, size, 4)).astype("float32")
        for layer in (theirs, mine):
            layer.build(x.shape)
        mine.set_weights(theirs.get_weights())
        xa, xb = (torch.tensor(x, requires_grad=True) for _ in range(2))
        ya, yb = theirs(xa), mine(xb)
        (ya ** 2).sum().backward()
        (yb ** 2).sum().backward()
        np.testing.assert_array_equal(yb.detach().numpy(), ya.detach().numpy())
        np.testing.assert_array_equal(xb.grad.numpy(), xa.grad.numpy())
        np.testing.assert_array_equal(mine.kernel.value.grad.numpy(),
                                      theirs.kernel.value.grad.numpy())
    assert isinstance(model.get_layer("stem_conv0"), vit.Conv2D)
    assert isinstance(model.get_layer("block0_attention"), vit.MultiHeadAttention)

    # attention computed plainly: Keras' outputs and gradients, up to rounding
    theirs, mine = keras.layers.MultiHeadAttention(4, 16), vit.MultiHeadAttention(4, 16)
    q = torch.randn(3, 36, 64, requires_grad=True)
    theirs(q, q), mine(q, q)
    mine.set_weights(theirs.get_weights())
    qa, qb = (q.detach().clone().requires_grad_(True) for _ in range(2))
    ya, yb = theirs(qa, qa), mine(qb, qb)
    ya.sum().backward()
    yb.sum().backward()
    np.testing.assert_allclose(yb.detach().numpy(), ya.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(qb.grad.numpy(), qa.grad.numpy(), atol=1e-4)

    # plain attention on the CPU: the same outputs and gradients as the flash kernel
    mha = keras.layers.MultiHeadAttention(4, 16)
    q = torch.randn(3, 36, 64, requires_grad=True)
    flash = mha(q, q)
    flash.sum().backward()
    grad, q.grad = q.grad.clone(), None
    with keras_fit.attention_kernel(model):
        plain = mha(q, q)
        plain.sum().backward()
    np.testing.assert_allclose(plain.detach().numpy(), flash.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(q.grad.numpy(), grad.numpy(), atol=1e-4)

    # batches reach the model channels first in memory, a (N, H, W, C) view: the same
    # outputs as the same images channels last
    images = np.random.default_rng(2).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    batch, _ = keras_fit.Batches(images, np.zeros(6), 6)[0]
    assert tuple(batch.shape) == (6, 32, 32, 3) and batch.permute(0, 3, 1, 2).is_contiguous()
    np.testing.assert_array_equal(batch.numpy(), images.astype("float32"))
    np.testing.assert_allclose(model(batch).detach().numpy(),
                               model(batch.contiguous()).detach().numpy(), atol=1e-5)
    print("ok")
""")


def test_fused_batch_norm_convolution_and_plain_attention_compute_what_keras_did(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", TORCH_KERAS, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_flip_affine_warps_as_kornias_random_affine():
    """The one warp is kornia's RandomAffine for the same draws, and a flip alone mirrors
    the image exactly."""
    import kornia.augmentation as K
    from kornia.geometry.transform import get_affine_matrix2d, warp_affine

    x = torch.rand(6, 3, 20, 24)
    aug = K.RandomAffine(7.2, translate=(0.1, 0.1), scale=(0.8, 1.2, 0.8, 1.2),
                         padding_mode="reflection", p=1.0)
    params = aug.forward_parameters(x.shape)
    matrix = get_affine_matrix2d(params["translations"], params["center"], params["scale"],
                                 params["angle"])
    ours = warp_affine(x, matrix[:, :2], (20, 24), padding_mode="reflection",
                       align_corners=False)
    torch.testing.assert_close(ours, aug(x, params=params))
    # the draws' order in FlipAffine: angle, zoom (two axes), then one flip draw an image
    flip_only = FlipAffine(0.0, scale=(1.0, 1.0))
    out = flip_only(x, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    torch.rand(6, generator=g), torch.rand(6, 2, generator=g)
    flipped = torch.rand(6, generator=g) < 0.5
    assert 0 < int(flipped.sum()) < 6
    torch.testing.assert_close(out[flipped], x[flipped].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[~flipped], x[~flipped], atol=1e-5, rtol=0)


@pytest.mark.parametrize("level", ["standard", "strong", "heavy", "efficientnet"])
def test_each_level_is_seeded_and_leaves_the_global_generator_alone(level):
    augment = augmentation_kornia(level)
    x = torch.rand(8, 3, 24, 24)
    state = torch.get_rng_state()
    first, again, other = augment(x, 3), augment(x, 3), augment(x, 4)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    assert not np.allclose(first.numpy(), other.numpy())
    assert first.shape == x.shape and float(first.min()) >= -1e-6
