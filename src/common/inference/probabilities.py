"""Class probabilities of a trained model, batch by batch, in evaluation mode: Keras models
(:func:`keras_probabilities`) and Hugging Face classifiers (:func:`hf_probabilities`,
:func:`forward_batches`), on whatever device the model is."""

from __future__ import annotations

import numpy as np


def keras_probabilities(model, x, batch_size: int = 64, flip: bool = False) -> np.ndarray:
    """Softmax probabilities of a Keras model that outputs logits, for uint8 images (N, H, W,
    3). ``flip``: test-time augmentation, the mean of the probabilities of each image and of
    its mirror image (left-right)."""
    views = [x, x[:, :, ::-1]] if flip else [x]
    out = 0.0
    for view in views:
        logits = np.asarray(model.predict(view.astype("float32"), batch_size=batch_size,
                                          verbose=0), dtype="float64")
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        out = out + z / z.sum(axis=1, keepdims=True)
    return out / len(views)


def forward_batches(model, processor, x, batch_size: int, **kwargs):
    """The model's outputs on ``uint8`` images, batch by batch, in evaluation mode."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            inputs = processor(images=list(x[i:i + batch_size]), return_tensors="pt")
            yield model(pixel_values=inputs["pixel_values"].to(device), **kwargs)


def hf_probabilities(model, processor, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities (softmax) for ``uint8`` images (N, H, W, 3)."""
    import torch

    out = [torch.softmax(o.logits.float(), -1).cpu().numpy()
           for o in forward_batches(model, processor, x, batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels))
