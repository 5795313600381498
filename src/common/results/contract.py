"""The results contract: what every notebook writes to ``results/<profile>/<notebook>.json``,
with its runs' per-image test predictions beside it (``<notebook>.predictions.csv``,
:mod:`common.results.predictions`).

The report and the checks read these files, never numbers typed by hand, as the typed
records of :mod:`common.results.records`. :func:`write` validates a payload against the
contract (:func:`problems`) and writes it atomically, the
predictions first and the results last, so a failed run never leaves a half-written file and
never replaces a good one with a bad one; a results file whose predictions file was replaced
by another run's is refused (their SHA-256 is recorded).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from common.config.loading import as_record
from common.config.study import NOTEBOOKS
from common.core import atomic, paths
from common.results import predictions as predictions_file
from common.results.metrics import classification_metrics, wilson
from common.results.provenance import environment, git_commit
from common.results.records import HISTORY, Results, Run


class ResultsError(ValueError):
    """A results file that breaks the contract; the message names the file and the field."""


def _where(loc: tuple, payload) -> str:
    """``runs[0] (name).metrics.test_accuracy`` for pydantic's ``loc``."""
    out, node = "", payload
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and "name" in node:
                out += f" ({node['name']})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _message(error: dict, payload) -> str:
    where = _where(error["loc"], payload)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"missing key '{where}'"
    if error["type"] == "extra_forbidden":
        return f"unknown key '{where}': not part of the results contract"
    got = "" if error["type"] == "value_error" else f", got {error.get('input')!r}"
    return f"{where}: {message}{got}" if where else f"{message}{got}"


def problems(payload, root: Path | None = None, predictions: bytes | None = None
             ) -> list[str]:
    """Every way ``payload`` (the parsed JSON of a results file) breaks the results contract
    (empty when it is valid): the :class:`Results` model's own validation, then the files it
    names, relative to the output folder ``root`` (default :func:`common.paths.output_root`):
    the figures, and the predictions file (``predictions``: its content, read from the file
    when not given), checked last, when everything else holds."""
    root = Path(root) if root is not None else paths.output_root()
    try:
        results = Results.model_validate(payload)
    except ValidationError as exc:
        return [_message(e, payload) for e in exc.errors()]
    out = [f"figure {f} does not exist in {root}" for f in results.figures
           if not (root / f).is_file()]
    if out:
        return out
    if predictions is None:
        if not (root / results.predictions.file).is_file():
            return [f"predictions file {results.predictions.file} does not exist in {root}"]
        predictions = (root / results.predictions.file).read_bytes()
    return predictions_file.problems(predictions, results)


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


def trained_on(runs: list[Run]) -> dict[str, str]:
    """Each framework that trained the runs and the device it trained on (the devices of
    its runs, joined when they differ), read from the frameworks, not from nvidia-smi."""
    seen: dict[str, list[str]] = {}
    for run in runs:
        for framework, device in run.trained_on.items():
            if device not in seen.setdefault(framework, []):
                seen[framework].append(device)
    return {framework: ", ".join(devices) for framework, devices in seen.items()}


def write(params, notebook: str, *, started: float, dataset: dict, runs: list[Run],
          figures: list) -> Path:
    """Validate and write ``results/<outputs>/<notebook>.json`` and, before it, the runs'
    predictions (``<notebook>.predictions.csv``); return the results' path.

    ``params``: the notebook's parameters (:func:`common.config.load`), recorded whole;
    ``started`` is the ``time.time()`` at the start of the notebook; ``runs``: the
    :class:`Run` of each run (:func:`run_record`), whose ``predictions`` go to the CSV.
    """
    folder = paths.results_dir(params.outputs)
    csv = predictions_file.to_csv({r.name: r.predictions for r in runs})
    payload = {"notebook": notebook, "profile": params.profile, "dry_run": params.dry_run,
               "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "duration_s": round(time.time() - started, 1), "git_commit": git_commit(),
               "environment": {**environment(), "trained_on": trained_on(runs)},
               "params": as_record(params),
               "dataset": dataset,
               "runs": [{**r.model_dump(mode="json"), "model_dir": _relative(r.model_dir)}
                        for r in runs],
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


def read(profile: str, notebook: str) -> Results | None:
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
    return Results.model_validate(payload)


def run_record(name: str, params, weights: dict, y_test, probs, trained: dict,
               model_dir, *, images) -> Run:
    """One run: test metrics from ``probs`` plus the training numbers, and the per-image
    ``predictions`` (:func:`common.results.predictions.table`), which :func:`write` puts in
    the predictions file.

    ``images``: the test images' ids, in the order of ``y_test`` and ``probs``
    (:func:`common.data.splits.row_ids`). ``trained`` holds ``history`` (per-epoch lists),
    ``best_val_accuracy``, ``train_seconds`` and ``train_images_per_second``, as returned by
    :func:`common.training.keras_fit.train`, and optionally ``best_epoch`` (1-based; None
    when the trainer does not say), ``checkpoint_rule`` (how the kept epoch was chosen:
    ``metric``, ``from_epoch``) and ``trained_on`` (framework -> the device it trained on).
    ``model_dir``: where the run's model folder is (relative to the output folder once
    written).
    """
    if not np.isfinite(np.asarray(probs, dtype=float)).all():
        raise ValueError(f"run {name!r}: the model's test probabilities hold NaN or infinity, "
                         "the training diverged; lower learning_rate (or add warmup_epochs) "
                         "and run again")
    metrics = classification_metrics(y_test, probs)
    n = len(np.asarray(y_test))
    if hasattr(params, "model_dump"):
        params = params.model_dump(mode="json")
    return Run(
        name=name, params=json.loads(json.dumps(dict(params), default=_jsonable)),
        weights=weights,
        metrics={**metrics, "best_val_accuracy": float(trained["best_val_accuracy"]),
                 "test_images": n,
                 "test_accuracy_ci95": tuple(wilson(round(metrics["test_accuracy"] * n), n))},
        history={k: [float(v) for v in trained["history"][k]] for k in HISTORY},
        best_epoch=trained.get("best_epoch"), checkpoint_rule=trained.get("checkpoint_rule"),
        train_seconds=round(float(trained["train_seconds"]), 2),
        train_images_per_second=round(float(trained["train_images_per_second"]), 2),
        epoch_seconds=[round(float(v), 3) for v in trained.get("epoch_seconds", [])],
        trained_on=dict(trained.get("trained_on") or {}),
        model_dir=_relative(model_dir),
        predictions=predictions_file.table(images, y_test, probs))


def collect(profile: str) -> dict[str, Results | None]:
    """The results of the five notebooks for ``profile`` (None for a notebook not run)."""
    return {name: read(profile, name) for name in NOTEBOOKS}


def all_runs(collected: dict[str, Results | None]):
    """One row per run of every notebook that has results (a plain DataFrame)."""
    rows = []
    for notebook, results in collected.items():
        for run in results.runs if results else []:
            low, high = run.metrics.test_accuracy_ci95 or (None, None)
            rows.append({"notebook": notebook, "run": run.name,
                         **run.metrics.model_dump(exclude={"test_accuracy_ci95"}),
                         "ci_low": low, "ci_high": high,
                         "epochs": len(run.history.loss),
                         "train_seconds": run.train_seconds,
                         "train_images_per_second": run.train_images_per_second,
                         "weights": run.weights.model_dump(),
                         "pretrained": run.weights.pretrained,
                         "synthetic": results.dataset.synthetic})
    return pd.DataFrame(rows)
