"""Attention rollout (Abnar & Zuidema, 2020) over the layers of a Hugging Face ViT."""

from __future__ import annotations

import math

import numpy as np

from common.inference.probabilities import forward_batches


def rollout_matrix(attentions) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020): per layer, average the heads, add the
    identity (the residual connection), normalise the rows, then multiply the layers, first
    layer on the right. ``attentions``: one (B, heads, T, T) array per layer. Returns (B, T, T);
    each row sums to 1."""
    rolled = None
    for layer in attentions:
        a = np.asarray(layer, dtype=np.float64).mean(axis=1)
        a = a + np.eye(a.shape[-1])
        a = a / a.sum(axis=-1, keepdims=True)
        rolled = a if rolled is None else a @ rolled
    if rolled is None:
        raise ValueError("attention rollout needs at least one layer")
    return rolled


def attention_rollout(attentions) -> np.ndarray:
    """The CLS row of the rollout over the patches, as (B, g, g) maps scaled to max 1.

    Tokens before the g*g patches (CLS, and DeiT's distillation token) are dropped."""
    rolled = rollout_matrix(attentions)
    tokens = rolled.shape[-1]
    g = math.isqrt(tokens - 1)
    maps = rolled[:, 0, tokens - g * g:].reshape(-1, g, g)
    return maps / np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)


def attention_maps(model, processor, x: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Attention rollout maps (N, g, g), values 0..1, of ``model`` on ``uint8`` images."""
    if model.config._attn_implementation != "eager":
        model.set_attn_implementation("eager")  # fused attention returns no weights
    out = []
    for o in forward_batches(model, processor, x, batch_size, output_attentions=True):
        if not o.attentions or o.attentions[0] is None:
            raise RuntimeError("the model returned no attentions: load it with "
                               "attn_implementation='eager'")
        out.append(attention_rollout([a.float().cpu().numpy() for a in o.attentions]))
    return np.concatenate(out)
