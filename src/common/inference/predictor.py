"""Predictions from any saved model folder, for users and for the notebooks.

A model folder (see :mod:`common.models.folder`) holds the model, ``labels.json`` and
``preprocess.json``. Loading never runs arbitrary code: Keras' safe mode, safetensors, no
remote code. New photos have no bounding box: a model trained on bounding-box crops sees the
whole photo, so crop the car first for its best predictions. The command line is
``python -m common predict``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from common.core import atomic
from common.data.images import decode, read_error
from common.data.table import IMAGE_EXTENSIONS
from common.inference.probabilities import hf_probabilities, keras_probabilities
from common.models import folder as model_folder


class Predictor:
    """A saved model folder, loaded once; predicts class probabilities for images.

    Raises :class:`common.model_folder.ModelFolderError` naming the file and what to do when
    the folder cannot be used (missing, corrupt or inconsistent files)."""

    def __init__(self, model_dir: Path | str):
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise model_folder.ModelFolderError(f"model folder not found: {self.model_dir}")
        self.labels = model_folder.read_labels(self.model_dir)
        self.preprocess = model_folder.read_preprocess(self.model_dir)
        self.framework = self.preprocess["framework"]
        if self.framework == "keras":
            self.model = self._load_keras()
            outputs, size = self.model.output_shape[-1], self.model.input_shape[1]
        else:
            self.model, self.processor = self._load_transformers()
            outputs = self.model.config.num_labels
            size = self.preprocess["image_size"]
        if outputs != len(self.labels):
            raise model_folder.ModelFolderError(
                f"{self.model_dir / model_folder.LABELS} names {len(self.labels)} classes but "
                f"the model has {outputs} outputs: the files come from different trainings; "
                "train the model again")
        if size is not None and size != self.preprocess["image_size"]:
            raise model_folder.ModelFolderError(
                f"{self.model_dir / model_folder.PREPROCESS} says image_size "
                f"{self.preprocess['image_size']} but the model expects {size} px images: the "
                "files come from different trainings; train the model again")

    def _load_keras(self):
        import keras

        import common.models.vit  # noqa: F401  (registers the custom ViT layers)

        path = self.model_dir / model_folder.KERAS_FILE
        if not path.is_file():
            raise model_folder.ModelFolderError(f"{path} is missing: train the model again")
        try:
            return keras.saving.load_model(path, safe_mode=True, compile=False)
        except Exception as exc:  # zip, h5 and deserialisation errors differ
            raise model_folder.ModelFolderError(
                f"{path} is corrupt or unreadable ({type(exc).__name__}): train the model "
                "again") from exc

    def _load_transformers(self):
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        weights = self.model_dir / "model.safetensors"
        if not weights.is_file():
            raise model_folder.ModelFolderError(f"{weights} is missing: train the model again")
        try:
            model = AutoModelForImageClassification.from_pretrained(
                self.model_dir, trust_remote_code=False, use_safetensors=True,
                local_files_only=True).eval()
            processor = AutoImageProcessor.from_pretrained(self.model_dir, local_files_only=True)
        except Exception as exc:  # safetensors, json and config errors differ
            raise model_folder.ModelFolderError(
                f"cannot load the model in {self.model_dir} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:120] if str(exc) else ''}): a file is truncated or "
                "corrupt; train the model again") from exc
        return model, processor

    def load(self, path: str) -> np.ndarray | None:
        """One image file as the model's uint8 input, or None if it cannot be read."""
        p = self.preprocess
        mode = p.get("crop_mode", "squash")
        return decode(str(path), int(p["image_size"]), "squash" if mode == "bbox" else mode)

    def probabilities(self, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Class probabilities for uint8 images (N, H, W, 3)."""
        if self.framework == "keras":
            return keras_probabilities(self.model, x, batch_size)
        return hf_probabilities(self.model, self.processor, x, batch_size)

    def predict_files(self, files: list[str], top: int = 5) -> list[dict]:
        """One dict per file: ``path`` and either the prediction or ``error`` (why the file
        could not be read)."""
        loaded = [(f, self.load(f)) for f in files]
        good = [(f, a) for f, a in loaded if a is not None]
        probs = self.probabilities(np.stack([a for _, a in good])) if good else np.zeros((0, 0))
        by_path = {}
        for (f, _), p in zip(good, probs):
            order = np.argsort(-p)[:top]
            cid, name = self.labels[int(order[0])]
            by_path[f] = {"path": f, "class_id": cid, "class_name": name,
                          "probability": float(p[order[0]]),
                          "top": [(self.labels[int(i)][0], self.labels[int(i)][1], float(p[i]))
                                  for i in order]}
        return [by_path.get(f) or {"path": f, "error": read_error(f) or "not a readable image"}
                for f in files]


def expand(inputs: list[str]) -> list[str]:
    """Files as given; folders become their image files, sorted."""
    files = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(str(f) for f in p.rglob("*")
                            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            files.append(item)
    return files


def write_csv(rows: list[dict], out: Path) -> None:
    """One row per predicted image (failed ones left out), written atomically."""
    with atomic.atomic_file(out, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "class_id", "class_name", "probability", "top_class_ids"])
        for r in rows:
            if "error" not in r:
                writer.writerow([r["path"], r["class_id"], r["class_name"],
                                 f"{r['probability']:.6f}",
                                 " ".join(str(t[0]) for t in r["top"])])


def csv_problem(out: Path) -> str | None:
    """Why the CSV file ``out`` could not be written (None when it can), checked before any
    prediction."""
    if out.is_dir():
        return f"--csv {out} is a folder: give a file name"
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        return f"--csv {out}: {parent} is a file, not a folder"
    return None
