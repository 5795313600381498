"""Unit tests of common.results: the metrics of a run and the weights shown in tables."""

import numpy as np
import pytest

from common import results


def test_metrics_of_two_and_of_many_classes():
    y = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    m = results.classification_metrics(y, probs)
    assert m["test_accuracy"] == m["test_top5_accuracy"] == pytest.approx(0.5)
    y = np.array([0, 1, 2, 3, 4, 5, 6])
    probs = np.eye(7)[[0, 1, 2, 3, 4, 5, 0]] + np.linspace(0, 0.5, 7)  # last one: 6 is 2nd
    m = results.classification_metrics(y, probs)
    assert m["test_accuracy"] == pytest.approx(6 / 7)
    assert m["test_top5_accuracy"] == pytest.approx(1.0)
    assert 0 < m["test_macro_f1"] < 1


@pytest.mark.parametrize("weights,shown", [
    ("random-init", "aléatoires"),
    ("random-init (pretrained unavailable: hub unreachable (x))",
     "aléatoires (pré-entraînés indisponibles)"),
    ("random-init, pretrained here on 186 other classes (6747 images, 24 epochs)",
     "pré-entraînés ici sur 186 autres classes"),
    ("google/vit-base-patch16-224-in21k", "google/vit-base-patch16-224-in21k"),
])
def test_short_weights(weights, shown):
    assert results.short_weights(weights) == shown
