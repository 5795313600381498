"""Per-image test predictions: one small CSV beside each results file.

``results/<profile>/<notebook>.predictions.csv`` holds one row per run and test image:
``run``, ``image`` (the image id, its path relative to the dataset folder, as in the test
set's fingerprint), ``label`` (the true 0-based label), ``predicted`` and ``top5`` (the
five most probable labels, best first, separated by spaces; fewer when the task has fewer
classes). Any two runs scored on the same test images can then be compared image by image
(:mod:`common.results.comparison`).

The results file names the CSV and its SHA-256, and :func:`problems` checks that the two
agree: every run has one row per image of the task's test set (same count, same
fingerprint) and the accuracy recomputed from the rows is the one recorded.
"""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from common.data.splits import inputs_fingerprint

COLUMNS = ("run", "image", "label", "predicted", "top5")
TOP = 5


def table(images, y_true, probs) -> pd.DataFrame:
    """The predictions of one run: ``images`` (ids, in the rows' order of ``y_true`` and
    ``probs``), true labels and the model's probabilities (N, K)."""
    probs = np.asarray(probs, dtype=float)
    images = [str(i) for i in images]
    if not len(images) == len(y_true) == len(probs):
        raise ValueError(f"predictions: {len(images)} image ids for {len(y_true)} labels and "
                         f"{len(probs)} rows of probabilities")
    top = np.argsort(-probs, axis=1, kind="stable")[:, :min(TOP, probs.shape[1])]
    return pd.DataFrame({"image": images, "label": np.asarray(y_true, dtype=int),
                         "predicted": top[:, 0].astype(int),
                         "top5": [" ".join(str(int(v)) for v in row) for row in top]})


def to_csv(runs: dict[str, pd.DataFrame]) -> bytes:
    """The CSV of a notebook's runs (run name -> :func:`table`), as bytes."""
    frames = [t.assign(run=name)[list(COLUMNS)] for name, t in runs.items()]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(path: Path | str) -> pd.DataFrame:
    """A predictions CSV (image ids and top-5 kept as text)."""
    return pd.read_csv(path, dtype={"run": str, "image": str, "label": int, "predicted": int,
                                    "top5": str}, keep_default_na=False)


def of_run(frame: pd.DataFrame, run: str) -> pd.DataFrame:
    """The rows of one run, indexed by image id."""
    return frame[frame["run"] == run].drop(columns="run").set_index("image")


def problems(data: bytes, results) -> list[str]:
    """Every way the predictions CSV ``data`` disagrees with ``results`` (a
    :class:`common.results.contract.Results`)."""
    record = results.predictions
    if sha256(data) != record.sha256:
        return [f"predictions file {record.file} is not the one these results were "
                "written with (its SHA-256 differs)"]
    try:
        frame = read(io.BytesIO(data))
    except (ValueError, pd.errors.ParserError) as exc:
        return [f"predictions file {record.file} is not a valid CSV ({exc})"]
    if tuple(frame.columns) != COLUMNS:
        return [f"predictions file {record.file} must have the columns "
                f"{', '.join(COLUMNS)}, got {', '.join(frame.columns)}"]
    test_set = results.dataset.test_set
    out = []
    for run in results.runs:
        rows = frame[frame["run"] == run.name]
        where = f"predictions of run {run.name}"
        if rows["image"].duplicated().any():
            out.append(f"{where} list an image twice")
        covered = inputs_fingerprint(rows["image"], test_set.crop)
        if len(rows) != test_set.images or covered != test_set.fingerprint:
            out.append(f"{where} cover {len(rows)} images, not the task's test set "
                       f"({test_set.images} images, fingerprint {test_set.fingerprint})")
            continue
        accuracy = float((rows["label"] == rows["predicted"]).mean())
        recorded = run.metrics.test_accuracy
        if not math.isclose(accuracy, recorded, abs_tol=1e-9):
            out.append(f"{where} give a test accuracy of {accuracy:.6f}, the results record "
                       f"{recorded:.6f}")
    extra = sorted(set(frame["run"]) - {r.name for r in results.runs})
    if extra:
        out.append(f"predictions file {record.file} holds runs the results do not: "
                   f"{', '.join(extra)}")
    return out
