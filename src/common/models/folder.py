"""The saved model folder: what a trainer writes beside its model and what a reader needs.

A model folder holds the model (``model.keras`` for Keras; ``save_pretrained`` files for
Hugging Face), ``labels.json`` (output index -> official class id and name) and
``preprocess.json`` (framework, image size, crop mode, normalisation, ...). Every trainer
writes these two files through :func:`write_info`; :mod:`common.inference.predictor` reads
them through :func:`read_labels` and :func:`read_preprocess`, which check them and name what
is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

from common.core import atomic

LABELS = "labels.json"
PREPROCESS = "preprocess.json"
STUDY = "study.json"  # the study a network was trained in (common.data.splits.study_fingerprints)
KERAS_FILE = "model.keras"
FRAMEWORKS = ("keras", "transformers")
# preprocess.json: required key -> accepted types
PREPROCESS_KEYS = {"framework": str, "image_size": int, "crop_mode": str}


class ModelFolderError(ValueError):
    """A model folder that cannot be used; the message names the file and what to do."""


def write_info(model_dir: Path | str, labels: dict[int, tuple[int, str]],
               preprocess: dict, study: dict | None = None) -> None:
    """Write ``labels.json`` and ``preprocess.json`` into ``model_dir`` (atomically), and
    ``study.json`` when ``study`` (the fingerprints of the data and split it was trained on)
    is given."""
    model_dir = Path(model_dir)
    if study:
        atomic.write_json(model_dir / STUDY, study)
    atomic.write_json(model_dir / LABELS, {str(i): {"class_id": int(cid), "class_name": name}
                                           for i, (cid, name) in sorted(labels.items())})
    atomic.write_json(model_dir / PREPROCESS, preprocess)


def _read_json(path: Path):
    if not path.is_file():
        raise ModelFolderError(f"{path.parent} is not a saved model folder: {path.name} is "
                               "missing (train a model with the notebooks first)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"{path} is unreadable or not valid JSON ({exc}): "
                               "train the model again to rewrite it") from exc


def read_labels(model_dir: Path | str) -> dict[int, tuple[int, str]]:
    """``labels.json``: output index -> (official class id, class name)."""
    path = Path(model_dir) / LABELS
    raw = _read_json(path)
    try:
        if not isinstance(raw, dict) or not raw:
            raise TypeError("expected a non-empty object")
        labels = {int(i): (int(v["class_id"]), str(v["class_name"])) for i, v in raw.items()}
    except (TypeError, KeyError, ValueError) as exc:
        raise ModelFolderError(
            f"{path} does not map output indices to {{class_id, class_name}} ({exc}): "
            "train the model again to rewrite it") from exc
    if sorted(labels) != list(range(len(labels))):
        raise ModelFolderError(f"{path}: output indices must be 0..{len(labels) - 1}, got "
                               f"{sorted(labels)[:5]}...")
    return labels


def read_preprocess(model_dir: Path | str) -> dict:
    """``preprocess.json``, with its required keys checked."""
    path = Path(model_dir) / PREPROCESS
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise ModelFolderError(f"{path} must hold a JSON object")
    for key, kind in PREPROCESS_KEYS.items():
        if key not in raw:
            raise ModelFolderError(f"{path} lacks '{key}': train the model again to rewrite it")
        if not isinstance(raw[key], kind) or isinstance(raw[key], bool):
            raise ModelFolderError(f"{path}: '{key}' must be a {kind.__name__}, got "
                                   f"{raw[key]!r}")
    if raw["framework"] not in FRAMEWORKS:
        raise ModelFolderError(f"{path}: unknown framework {raw['framework']!r} "
                               f"(expected one of {FRAMEWORKS})")
    if raw["image_size"] < 1:
        raise ModelFolderError(f"{path}: image_size must be positive, got {raw['image_size']}")
    return raw


def read_study(model_dir: Path | str) -> dict:
    """``study.json``: the fingerprints of the data (``data``) and split (``split``) that the
    network was trained on."""
    path = Path(model_dir) / STUDY
    raw = _read_json(path)
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) for k in
                                            ("data", "split")):
        raise ModelFolderError(f"{path} must give the 'data' and 'split' fingerprints: train "
                               "the model again to rewrite it")
    return raw
