"""Predictions from any saved model folder, for users and for the notebooks.

A model folder (see :mod:`common.model_folder`) holds the model, ``labels.json`` and
``preprocess.json``. Loading never runs
arbitrary code: Keras' safe mode, safetensors, no remote code. New photos have no bounding
box: a model trained on bounding-box crops sees the whole photo, so crop the car first for
its best predictions.

    python -m common.predict MODEL_DIR IMAGE_OR_FOLDER... [--top 5] [--csv OUT]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from common import atomic, model_folder
from common.data import IMAGE_EXTENSIONS


class Predictor:
    """A saved model folder, loaded once; predicts class probabilities for images."""

    def __init__(self, model_dir: Path | str):
        self.model_dir = Path(model_dir)
        self.labels = model_folder.read_labels(self.model_dir)
        self.preprocess = model_folder.read_preprocess(self.model_dir)
        self.framework = self.preprocess["framework"]
        if self.framework == "keras":
            import keras

            import common.vit  # noqa: F401  (registers the custom ViT layers and loss)

            self.model = keras.saving.load_model(self.model_dir / model_folder.KERAS_FILE,
                                                 safe_mode=True)
        else:
            from transformers import AutoImageProcessor, AutoModelForImageClassification

            self.model = AutoModelForImageClassification.from_pretrained(
                self.model_dir, trust_remote_code=False, use_safetensors=True).eval()
            self.processor = AutoImageProcessor.from_pretrained(self.model_dir)

    def load(self, path: str) -> np.ndarray | None:
        """One image file as the model's uint8 input, or None if it cannot be read."""
        from common.images import decode

        p = self.preprocess
        mode = p.get("crop_mode", "squash")
        return decode(str(path), int(p["image_size"]), "squash" if mode == "bbox" else mode)

    def probabilities(self, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Class probabilities for uint8 images (N, H, W, 3)."""
        if self.framework == "keras":
            from common.keras_training import probabilities

            return probabilities(self.model, x, batch_size)
        from common.hf_training import predict_probs

        return predict_probs(self.model, self.processor, x, batch_size)

    def predict_files(self, files: list[str], top: int = 5) -> list[dict]:
        """One dict per file: ``path`` and either the prediction or ``error``."""
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
        return [by_path.get(f, {"path": f, "error": "not a readable image"}) for f in files]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.predict",
                                     description="Predict Stanford Cars classes "
                                                 "with a saved model.")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("inputs", nargs="+", help="image files or folders")
    parser.add_argument("--top", type=int, default=5, help="how many classes to list (default 5)")
    parser.add_argument("--csv", type=Path, help="also write one row per image to this CSV file")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor(args.model_dir)
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files = expand(args.inputs)
    if not files:
        print("error: no image files found in the given inputs", file=sys.stderr)
        return 2
    rows = predictor.predict_files(files, top=args.top)
    for r in rows:
        if "error" in r:
            print(f"{r['path']}: error: {r['error']}", file=sys.stderr)
            continue
        top = ", ".join(f"{cid} {name} ({p:.1%})" for cid, name, p in r["top"])
        print(f"{r['path']}: {r['class_id']} {r['class_name']} ({r['probability']:.1%})"
              f" | top: {top}")
    if args.csv:
        write_csv(rows, args.csv)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
