"""Unit tests of common.results: the metrics of a run and the weights shown in tables."""

import numpy as np
import pytest

from common import presentation, results


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
    (results.weights_info("random-init", pretrained=False), "aléatoires"),
    (results.weights_info("random-init", pretrained=False, requested="x/y",
                          reason="pretrained unavailable: hub unreachable (x)"),
     "aléatoires (pré-entraînés indisponibles)"),
    (results.weights_info("pretrained-here", pretrained=False, classes=196,
                          **{"from": "01_vit_scratch/improved-hybrid"}),
     "pré-entraînés ici (01_vit_scratch/improved-hybrid, 196 classes)"),
    (results.weights_info("google/vit-base-patch16-224-in21k", pretrained=True),
     "google/vit-base-patch16-224-in21k"),
])
def test_short_weights(weights, shown):
    assert presentation.short_weights(weights) == shown
    assert results._weights_problems(weights) == []


@pytest.mark.parametrize("weights,problem", [
    ("random-init", "must be a record"),
    ({"source": "", "pretrained": False, "reason": None}, "weights.source"),
    ({"source": "x", "pretrained": "yes", "reason": None}, "weights.pretrained"),
    ({"source": "x", "pretrained": True, "reason": 3}, "weights.reason"),
])
def test_weights_record_is_checked(weights, problem):
    assert any(problem in p for p in results._weights_problems(weights))


def test_pct_is_french():
    assert presentation.pct(0.337) == "33,7\u00a0%"
    assert presentation.pct(0.1, 0) == "10\u00a0%"
