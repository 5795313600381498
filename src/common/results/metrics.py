"""The numbers of a run: test metrics and the interval of an accuracy."""

from __future__ import annotations

import math

import numpy as np


def classification_metrics(y_true, probs) -> dict:
    """Top-1, top-5 (top-k when fewer classes) accuracy and macro-F1 on 0-based labels."""
    from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=float)
    labels = np.arange(probs.shape[1])
    y_pred = probs.argmax(axis=1)
    top1 = float(accuracy_score(y_true, y_pred))
    # with two classes sklearn wants one score column; top-1 is then the only useful k
    topk = (float(top_k_accuracy_score(y_true, probs, k=min(5, probs.shape[1] - 1),
                                       labels=labels)) if probs.shape[1] > 2 else top1)
    return {"test_accuracy": top1,
            "test_top5_accuracy": topk,
            "test_macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=labels,
                                            zero_division=0))}


def wilson(successes: int, n: int, z: float = 1.959964) -> list[float]:
    """The Wilson score interval of a proportion, 95 % by default: [low, high]."""
    if n <= 0:
        return [0.0, 1.0]
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]

