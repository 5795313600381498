"""Two runs compared image by image, and a run against a target.

Two runs are compared only when they were scored on the same test images (equal test-set
fingerprints); then, from their per-image predictions (:mod:`common.results.predictions`):

- the difference of their accuracies, in points;
- its paired 95 % interval: Newcombe's method 10 for paired proportions (Newcombe, 1998,
  *Statistics in Medicine* 17, 2635-2650), built from the two Wilson intervals that the
  report shows and the correlation of the two runs' successes (neither scipy nor
  statsmodels has it for paired data);
- the exact McNemar test: under "the two runs are as good", the images that only one of
  them gets right split 50/50; its two-sided p-value is scipy's exact binomial test on
  those discordant images.

The report makes several such comparisons at once: their p-values are adjusted with Holm's
step-down method (Holm, 1979, *Scandinavian Journal of Statistics* 6, 65-70), which keeps
the chance of any false "better" at 5 % across them (:func:`holm`). A difference the test
does not separate is no evidence of equality: it is "not detectable", never a tie.

A target is reached when the lower bound of the run's 95 % interval is at or above it, not
reached when the upper bound is below it, undecided otherwise (:func:`target_verdict`).
"""

from __future__ import annotations

import math

import pandas as pd

from common.core import paths
from common.results import predictions as predictions_file
from common.results.metrics import wilson

ALPHA = 0.05


def run_predictions(results, run: str) -> pd.DataFrame:
    """The per-image predictions of one run of a notebook's results, indexed by image id."""
    frame = predictions_file.read(paths.output_root() / results.predictions.file)
    return predictions_file.of_run(frame, run)


def same_test(a, b) -> bool:
    """Whether two notebooks' results were scored on the same test images."""
    return a.dataset.test_set.fingerprint == b.dataset.test_set.fingerprint


def paired(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """Run ``a`` against run ``b`` on the same images (predictions indexed by image id):
    ``n``, both accuracies, ``difference`` (a - b), its paired ``ci95``, ``only_a`` and
    ``only_b`` (images only that run gets right), McNemar's exact ``p_value`` and
    ``separated`` (p < 5 %, for this comparison alone: :func:`holm` for several)."""
    from scipy.stats import binomtest

    if set(a.index) != set(b.index):
        raise ValueError("paired comparison of runs scored on different images")
    b = b.loc[a.index]
    if not (a["label"] == b["label"]).all():
        raise ValueError("paired comparison: the two runs disagree on the true labels")
    right_a = (a["predicted"] == a["label"]).to_numpy()
    right_b = (b["predicted"] == b["label"]).to_numpy()
    n = len(a)
    both = int((right_a & right_b).sum())
    only_a = int((right_a & ~right_b).sum())
    only_b = int((~right_a & right_b).sum())
    neither = n - both - only_a - only_b
    discordant = only_a + only_b
    p_value = float(binomtest(only_a, discordant, 0.5).pvalue) if discordant else 1.0
    return {"n": n, "accuracy_a": (both + only_a) / n, "accuracy_b": (both + only_b) / n,
            "difference": (only_a - only_b) / n,
            "ci95": newcombe_paired(both, only_a, only_b, neither),
            "only_a": only_a, "only_b": only_b, "p_value": p_value,
            "separated": p_value < ALPHA}


def holm(p_values: list[float]) -> list[float]:
    """Holm's adjusted p-values, in the order given: the i-th smallest of m is multiplied
    by m - i (i from 0), made non-decreasing along that order, and capped at 1. A
    comparison is separated at 5 % across all of them when its adjusted p is below 5 %."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def compare_all(results: list[dict | None]) -> list[dict | None]:
    """Several comparisons (:func:`paired` results; None for one not made) with Holm's
    ``p_adjusted``, ``comparisons`` (how many were adjusted together) and ``separated``
    read from the adjusted p."""
    made = [r for r in results if r is not None]
    for result, adjusted in zip(made, holm([r["p_value"] for r in made])):
        result.update(p_adjusted=adjusted, comparisons=len(made),
                      separated=adjusted < ALPHA)
    return results


def newcombe_paired(both: int, only_a: int, only_b: int, neither: int) -> list[float]:
    """The 95 % interval of p_a - p_b for paired proportions (Newcombe's method 10): the
    counts of images both runs, only a, only b and neither get right."""
    n = both + only_a + only_b + neither
    p_a, p_b = (both + only_a) / n, (both + only_b) / n
    (l_a, u_a), (l_b, u_b) = wilson(both + only_a, n), wilson(both + only_b, n)
    denominator = math.sqrt((both + only_a) * (only_b + neither) * (both + only_b)
                            * (only_a + neither))
    phi = (both * neither - only_a * only_b) / denominator if denominator else 0.0
    delta = p_a - p_b
    low = math.sqrt(max(0.0, (p_a - l_a) ** 2 - 2 * phi * (p_a - l_a) * (u_b - p_b)
                        + (u_b - p_b) ** 2))
    high = math.sqrt(max(0.0, (u_a - p_a) ** 2 - 2 * phi * (u_a - p_a) * (p_b - l_b)
                         + (p_b - l_b) ** 2))
    return [max(-1.0, delta - low), min(1.0, delta + high)]


def compare(a: dict, run_a: str, b: dict, run_b: str) -> dict | None:
    """Run ``run_a`` of payload ``a`` against ``run_b`` of ``b`` (:func:`paired`), or None
    when they were scored on different test images."""
    if not same_test(a, b):
        return None
    return paired(run_predictions(a, run_a), run_predictions(b, run_b))


def target_verdict(ci95, target: float) -> str:
    """"reached" (the interval's lower bound is at or above ``target``), "missed" (its
    upper bound is below it) or "undecided"."""
    low, high = ci95
    if low >= target:
        return "reached"
    if high < target:
        return "missed"
    return "undecided"


def chosen_run(results):
    """The run of a notebook chosen on validation: the highest ``best_val_accuracy`` (the
    first one on a tie); ``results``: a :class:`common.results.contract.Results`."""
    return max(results.runs, key=lambda r: r.metrics.best_val_accuracy)
