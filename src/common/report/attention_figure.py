"""The attention figure of a fine-tuned classifier (notebooks 03 and 04): where the model
looks, by attention rollout (:mod:`common.inference.attention`), over a few test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.inference.attention import attention_maps
from common.report import figures


def attention_examples(test: dict, labels: dict, n: int, path) -> Path:
    """The attention rollout of a fine-tuned classifier on ``n`` test images, one per class
    first, titled with the true class, ✓ when it was predicted and ✗ when not.

    ``test`` holds ``x``, ``y``, ``probs`` and the fine-tuned ``classifier``."""
    clf, pick = test["classifier"], figures.one_per_class(test["y"], n)
    maps = attention_maps(clf.model, clf.processor, test["x"][pick])
    predicted = np.asarray(test["probs"])[pick].argmax(axis=1)
    titles = [f"{'✓' if guess == test['y'][i] else '✗'} {labels[int(test['y'][i])][1]}"
              for i, guess in zip(pick, predicted)]
    return figures.attention(test["x"][pick], maps, titles, path)
