"""The results contract: what every notebook writes to ``results/<profile>/<notebook>.json``,
with its runs' per-image test predictions beside it (``<notebook>.predictions.csv``,
:mod:`common.results.predictions`).

The report and the checks read these files, never numbers typed by hand. :func:`write`
validates a payload against the contract (:func:`problems`) and writes it atomically, the
predictions first and the results last, so a failed run never leaves a half-written file and
never replaces a good one with a bad one; a results file whose predictions file was replaced
by another run's is refused (their SHA-256 is recorded).
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from common.config.loading import as_record
from common.config.study import NOTEBOOKS
from common.core import atomic, paths
from common.results import predictions as predictions_file
from common.results.metrics import classification_metrics, wilson
from common.results.provenance import PACKAGES, environment, git_commit

METRICS = ("test_accuracy", "test_top5_accuracy", "best_val_accuracy", "test_macro_f1")
HISTORY = ("loss", "val_loss", "accuracy", "val_accuracy")
RUN_KEYS = ("name", "params", "weights", "metrics", "history", "train_seconds",
            "train_images_per_second", "model_dir")
TOP_KEYS = ("notebook", "profile", "dry_run", "created", "duration_s", "git_commit",
            "environment", "params", "dataset", "runs", "figures", "predictions")
DATASET_KEYS = ("root", "layout", "synthetic", "task", "n_classes", "class_ids",
                "official_test", "split_sizes", "test_set")


def _weights_problems(weights) -> list[str]:
    if not isinstance(weights, dict):
        return [f"weights must be a record (source, pretrained, reason), got {weights!r}"]
    out = []
    if not isinstance(weights.get("source"), str) or not weights.get("source"):
        out.append("weights.source must name the checkpoint, 'random-init' or "
                   "'pretrained-here'")
    if not isinstance(weights.get("pretrained"), bool):
        out.append("weights.pretrained must be true or false")
    if weights.get("reason") is not None and not isinstance(weights.get("reason"), str):
        out.append("weights.reason must be text or null")
    return out


def _is_fraction(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
        and 0.0 <= v <= 1.0


class ResultsError(ValueError):
    """A results file that breaks the contract; the message names the file and the field."""


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def problems(payload: dict, root: Path | None = None, predictions: bytes | None = None
             ) -> list[str]:
    """Every way ``payload`` breaks the results contract (empty when it is valid). Paths
    (figures, model folders, the predictions file) are relative to the output folder
    ``root`` (default :func:`common.paths.output_root`); ``predictions``: the predictions
    CSV's content, read from its file when not given. The predictions are checked last,
    when everything else holds."""
    root = Path(root) if root is not None else paths.output_root()
    if not isinstance(payload, dict):
        return ["the file must hold a JSON object"]
    out = [f"missing key '{k}'" for k in TOP_KEYS if k not in payload]
    if out:
        return out
    env = payload["environment"]
    out += [f"environment lacks '{k}'" for k in ("python", *PACKAGES, "device") if k not in env]
    ds = payload["dataset"]
    out += [f"dataset lacks '{k}'" for k in DATASET_KEYS if k not in ds]
    if set(ds.get("split_sizes", {})) != {"train", "val", "test"}:
        out.append("dataset.split_sizes must have train, val and test")
    test_set = ds.get("test_set") or {}
    if not (isinstance(test_set.get("images"), int) and test_set["images"] > 0
            and isinstance(test_set.get("fingerprint"), str) and test_set["fingerprint"]):
        out.append("dataset.test_set must give the test images (a positive count) and their "
                   "fingerprint")
    if not isinstance(payload["runs"], list) or not payload["runs"]:
        out.append("runs must be a non-empty list")
        return out
    for i, run in enumerate(payload["runs"]):
        where = f"runs[{i}] ({run.get('name', '?')})"
        out += [f"{where} lacks '{k}'" for k in RUN_KEYS if k not in run]
        for m in METRICS:
            if not _is_fraction(run.get("metrics", {}).get(m)):
                out.append(f"{where} metric {m} must be a fraction 0..1, got "
                           f"{run.get('metrics', {}).get(m)!r}")
        images = run.get("metrics", {}).get("test_images")
        if images is not None and images != test_set.get("images"):
            out.append(f"{where} was scored on {images} test images, not on the task's "
                       f"{test_set.get('images')}")
        ci = run.get("metrics", {}).get("test_accuracy_ci95")
        if ci is not None and not (isinstance(ci, list) and len(ci) == 2
                                   and all(_is_fraction(v) for v in ci) and ci[0] <= ci[1]):
            out.append(f"{where} metric test_accuracy_ci95 must be [low, high] in 0..1, "
                       f"got {ci!r}")
        hist = run.get("history", {})
        lengths = {k: len(hist.get(k, [])) for k in HISTORY}
        if min(lengths.values()) == 0 or len(set(lengths.values())) != 1:
            out.append(f"{where} history needs equal non-empty {', '.join(HISTORY)}: {lengths}")
        for k in HISTORY:
            bad = [v for v in hist.get(k, []) if not _finite(v)]
            if bad:
                out.append(f"{where} history.{k} holds non-finite values {bad[:3]}")
        for k in ("train_seconds", "train_images_per_second"):
            v = run.get(k)
            if not (_finite(v) and v >= 0):
                out.append(f"{where} {k} must be a non-negative number, got {v!r}")
        out += [f"{where} {p}" for p in _weights_problems(run.get("weights"))]
        if Path(str(run.get("model_dir", ""))).is_absolute():
            out.append(f"{where} model_dir must be relative to the output folder")
    for f in payload["figures"]:
        if Path(f).is_absolute():
            out.append(f"figure {f} must be relative to the output folder")
        elif not (root / f).is_file():
            out.append(f"figure {f} does not exist in {root}")
    if out:
        return out
    record = payload["predictions"]
    if not (isinstance(record, dict) and isinstance(record.get("file"), str)
            and isinstance(record.get("sha256"), str)):
        return ["predictions must name the predictions file and its sha256"]
    if predictions is None:
        if Path(record["file"]).is_absolute() or not (root / record["file"]).is_file():
            return [f"predictions file {record['file']} does not exist in {root}"]
        predictions = (root / record["file"]).read_bytes()
    return predictions_file.problems(predictions, payload)


def resolve(path: str) -> Path:
    """A path of a results file (figure, model folder) in the output folder."""
    return paths.output_root() / path


def _relative(path) -> str:
    path = Path(path)
    root = paths.output_root()
    return str(path.relative_to(root)) if path.is_absolute() and path.is_relative_to(root) \
        else str(path)


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (np.ndarray, tuple, set)):
        return list(value.tolist() if isinstance(value, np.ndarray) else value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def trained_on(runs: list[dict]) -> dict[str, str]:
    """Each framework that trained the runs and the device it trained on (the devices of
    its runs, joined when they differ), read from the frameworks, not from nvidia-smi."""
    seen: dict[str, list[str]] = {}
    for run in runs:
        for framework, device in (run.get("trained_on") or {}).items():
            if device not in seen.setdefault(framework, []):
                seen[framework].append(device)
    return {framework: ", ".join(devices) for framework, devices in seen.items()}


def write(params, notebook: str, *, started: float, dataset: dict, runs: list[dict],
          figures: list) -> Path:
    """Validate and write ``results/<outputs>/<notebook>.json`` and, before it, the runs'
    predictions (``<notebook>.predictions.csv``); return the results' path.

    ``params``: the notebook's parameters (:func:`common.config.load`), recorded whole;
    ``started`` is the ``time.time()`` at the start of the notebook; ``runs``: records of
    :func:`run_record`, whose ``predictions`` go to the CSV.
    """
    folder = paths.results_dir(params.outputs)
    csv = predictions_file.to_csv({r["name"]: r["predictions"] for r in runs})
    runs = [{k: v for k, v in r.items() if k != "predictions"} for r in runs]
    payload = {"notebook": notebook, "profile": params.profile, "dry_run": params.dry_run,
               "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "duration_s": round(time.time() - started, 1), "git_commit": git_commit(),
               "environment": {**environment(), "trained_on": trained_on(runs)},
               "params": as_record(params),
               "dataset": dataset,
               "runs": [{**r, "model_dir": _relative(r["model_dir"])} for r in runs],
               "figures": [_relative(f) for f in figures],
               "predictions": {"file": _relative(folder / f"{notebook}.predictions.csv"),
                               "sha256": predictions_file.sha256(csv)}}
    payload = json.loads(json.dumps(payload, default=_jsonable))
    bad = problems(payload, predictions=csv)
    if bad:
        raise ValueError("results do not match the contract: " + "; ".join(bad))
    with atomic.atomic_file(folder / f"{notebook}.predictions.csv", "wb") as f:
        f.write(csv)
    return atomic.write_json(folder / f"{notebook}.json", payload)


def read(profile: str, notebook: str) -> dict | None:
    """The results of one notebook, checked against the contract, or None when it has not
    run. Raises :class:`ResultsError` naming the file and the first broken field."""
    path = paths.results_dir(profile) / f"{notebook}.json"
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path} is not valid JSON ({exc}): run the notebook again "
                           f"(make run PROFILE={profile} FORCE=1)") from exc
    bad = problems(payload)
    if bad:
        raise ResultsError(f"{path}: {bad[0]}" + (f" (and {len(bad) - 1} more)"
                                                  if len(bad) > 1 else "")
                           + f"; run the notebook again (make run PROFILE={profile} FORCE=1)")
    return payload


def run_record(name: str, params: dict, weights: dict, y_test, probs, trained: dict,
               model_dir, *, images) -> dict:
    """One entry of ``runs``: test metrics from ``probs`` plus the training numbers, and the
    per-image ``predictions`` (:func:`common.results.predictions.table`), which
    :func:`write` puts in the predictions file.

    ``images``: the test images' ids, in the order of ``y_test`` and ``probs``
    (:func:`common.data.splits.row_ids`). ``trained`` holds ``history`` (per-epoch lists),
    ``best_val_accuracy``, ``train_seconds`` and ``train_images_per_second``, as returned by
    :func:`common.training.keras_fit.train`, and optionally ``best_epoch`` (1-based; None
    when the trainer does not say), ``checkpoint_rule`` (how the kept epoch was chosen:
    ``metric``, ``from_epoch``) and ``trained_on`` (framework -> the device it trained on).
    """
    if not np.isfinite(np.asarray(probs, dtype=float)).all():
        raise ValueError(f"run {name!r}: the model's test probabilities hold NaN or infinity, "
                         "the training diverged; lower learning_rate (or add warmup_epochs) "
                         "and run again")
    metrics = classification_metrics(y_test, probs)
    n = len(np.asarray(y_test))
    if hasattr(params, "model_dump"):
        params = params.model_dump(mode="json")
    return {"name": name, "params": dict(params), "weights": weights,
            "metrics": {**metrics, "best_val_accuracy": float(trained["best_val_accuracy"]),
                        "test_images": n,
                        "test_accuracy_ci95": wilson(round(metrics["test_accuracy"] * n), n)},
            "history": {k: [float(v) for v in trained["history"][k]] for k in HISTORY},
            "best_epoch": trained.get("best_epoch"),
            "checkpoint_rule": trained.get("checkpoint_rule"),
            "train_seconds": round(float(trained["train_seconds"]), 2),
            "train_images_per_second": round(float(trained["train_images_per_second"]), 2),
            "epoch_seconds": [round(float(v), 3) for v in trained.get("epoch_seconds", [])],
            "trained_on": dict(trained.get("trained_on") or {}),
            "model_dir": str(model_dir),
            "predictions": predictions_file.table(images, y_test, probs)}


def collect(profile: str) -> dict[str, dict | None]:
    """The results of the five notebooks for ``profile`` (None for a notebook not run)."""
    return {name: read(profile, name) for name in NOTEBOOKS}


def all_runs(collected: dict[str, dict | None]):
    """One row per run of every notebook that has results (a plain DataFrame)."""
    import pandas as pd

    rows = []
    for notebook, payload in collected.items():
        for run in (payload or {}).get("runs", []):
            ci = run["metrics"].get("test_accuracy_ci95") or [None, None]
            rows.append({"notebook": notebook, "run": run["name"], **run["metrics"],
                         "ci_low": ci[0], "ci_high": ci[1],
                         "epochs": len(run["history"]["loss"]),
                         "train_seconds": run["train_seconds"],
                         "train_images_per_second": run["train_images_per_second"],
                         "weights": run["weights"],
                         "pretrained": bool(run["weights"]["pretrained"]),
                         "synthetic": bool(payload["dataset"]["synthetic"])})
    return pd.DataFrame(rows)
