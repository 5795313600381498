"""The one data entry point of the five notebooks: a task's classes and its split.

The study draws one train / validation / test split of the whole dataset, from the study
file's ``split_seed`` and fractions (:class:`common.config.schema.Study`); the official test
split is the test set when the data has it. Each task takes that split: the 196 classes
whole, the 10 classes cut down to theirs. So 01, 03 and 05 are scored on the same test
images, and 02 and 04 on the 10 classes' images of that same test set. A run's caps and
balancing cut its training and validation sets only (:meth:`Task.budget`).

Every notebook reads every image with the study's one crop (``crop_mode``, ``crop_margin``):
models of a task are scored on the same inputs, and the test set's fingerprint covers the
crop as well as the image ids. ``crop_mode: bbox`` on data without boxes is refused
(:class:`common.data.table.DataError`), unless ``missing_boxes: whole`` takes those images
whole; the results record how many images had a box.

A dry run keeps at most a few images per split, the same ones for every notebook of a task:
half of the evaluation images come from the 10 classes, so that the 10-class test set is
still the 10 classes' part of the 196-class one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from common.config.schema import Study
from common.core import paths
from common.data import splits
from common.data.table import DataError, load_table


@dataclass
class Task:
    """The data of one task: its table (labels 0..K-1), its split, its label names."""

    name: str
    table: pd.DataFrame
    parts: splits.Splits
    labels: dict[int, tuple[int, str]]
    official_test: bool
    study: Study

    def budget(self, cap_per_class: int | None = None, balance: bool = False,
               seed: int = 0) -> splits.Splits:
        """A run's training and validation sets (:func:`common.data.splits.budget`); the
        test set is always the task's."""
        return splits.budget(self.parts, cap_per_class, balance, seed)

    def test_set(self) -> dict:
        """The test set's size and fingerprint (a hash of its sorted image ids and of the
        crop they are read with: the same images cropped otherwise are other inputs)."""
        mode, margin = self.parts.crop
        crop = f"crop {mode}" + (f" {margin:g}" if mode == "bbox" else "")
        return {"images": len(self.parts.test), "crop": crop,
                "fingerprint": splits.inputs_fingerprint(splits.row_ids(self.parts.test),
                                                         crop)}

    def crop_record(self) -> dict:
        """The crop applied: its mode and margin, and how many of the task's images had a
        bounding box (the others, with ``bbox``, were taken whole)."""
        mode, margin = self.parts.crop
        boxes = int(self.table["bbox_x1"].notna().sum())
        return {"mode": mode, "margin": margin if mode == "bbox" else None,
                "images_with_box": boxes, "images": len(self.table)}

    def record(self) -> dict:
        """The ``dataset`` block of the results files (``split.disjoint``: no image is in
        two of its sets, checked here)."""
        self.parts.check()
        table = self.table
        return {"root": table.attrs.get("root"), "layout": table.attrs.get("layout"),
                "synthetic": bool(table.attrs.get("synthetic", False)),
                "task": self.name, "n_classes": len(self.labels),
                "class_ids": sorted(int(c) for c in table["class_id"].unique()),
                "n_images": len(table),
                "images_per_class": [int(table["class_id"].value_counts().min()),
                                     int(table["class_id"].value_counts().max())],
                "official_test": self.official_test,
                "split": {"seed": self.study.split_seed,
                          "val_fraction": self.study.val_fraction,
                          "test_fraction": None if self.official_test
                          else self.study.test_fraction,
                          "fingerprints": dict(self.parts.fingerprints), "disjoint": True},
                "split_sizes": self.parts.sizes(), "test_set": self.test_set(),
                "crop": self.crop_record()}


def load_task(study: Study, task: str, limits: dict | None = None) -> Task:
    """The data of ``task`` ("all": every class; "ten": the study's ``ten_classes``).
    ``limits`` (a dry run): at most ``train`` training and ``evaluation`` validation and
    test images."""
    full = splits.select_classes(load_table(paths.resolve(study.data_dir)))
    _check_boxes(full, study)
    whole = splits.make_splits(full, val_fraction=study.val_fraction,
                               test_fraction=study.test_fraction, seed=study.split_seed)
    if limits:
        whole = _shrink(whole, study.ten_classes, limits, study.split_seed)
    whole.fingerprints = splits.study_fingerprints(full, whole)
    whole.crop = (study.crop_mode, study.crop_margin)
    table = full if task == "all" else splits.select_classes(full, class_ids=study.ten_classes)
    parts = splits.restrict(whole, table)
    return Task(task, table, parts, splits.label_names(table),
                bool((full["split"] == "test").any()), study)


def _check_boxes(table: pd.DataFrame, study: Study) -> None:
    """``crop_mode: bbox`` needs a box for every image, unless ``missing_boxes: whole``."""
    missing = int(table["bbox_x1"].isna().sum())
    if study.crop_mode == "bbox" and missing and study.missing_boxes == "refuse":
        raise DataError(
            f"study crop_mode bbox, but {missing} of the {len(table)} images of "
            f"{table.attrs.get('root')} have no bounding box: set crop_mode: squash in the "
            f"study file, or missing_boxes: whole to take those images whole")


def _shrink(parts: splits.Splits, ten: list[int], limits: dict, seed: int) -> splits.Splits:
    def take(part: pd.DataFrame, n: int) -> pd.DataFrame:
        inside = part["class_id"].isin(ten)
        first = splits.sample(part[inside], n // 2, seed)
        rest = splits.sample(part[~inside], n - len(first), seed)
        out = pd.concat([first, rest]).sort_values("path", kind="stable")
        out.attrs.update(part.attrs)
        return out.reset_index(drop=True)

    return splits.Splits(take(parts.train, limits["train"]),
                         take(parts.val, limits["evaluation"]),
                         take(parts.test, limits["evaluation"]))
