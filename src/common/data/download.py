"""Writing a dataset in the devkit layout, and downloading the full Stanford Cars.

:func:`write_devkit_mats` writes the devkit's ``.mat`` files (used by :mod:`common.data.synth`
too); :func:`download` fetches the full dataset (official split) from the Hugging Face hub and
:func:`convert_hf` writes it in the devkit layout.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import scipy.io

from common.core import paths
from common.data.table import BBOX, DataError

HF_DATASET = "tanganke/stanford_cars"


# ------------------------------------------------------------------- writing the devkit layout

def mat_struct(rows: list[dict]) -> np.ndarray:
    """Rows (dicts with the same keys) as a MATLAB struct array."""
    fields = list(rows[0])
    arr = np.empty((1, len(rows)), dtype=[(f, "O") for f in fields])
    for i, row in enumerate(rows):
        arr[0, i] = tuple(row[f] for f in fields)
    return arr


def mat_cell(strings: list[str]) -> np.ndarray:
    """Strings as a MATLAB cell array."""
    arr = np.empty((1, len(strings)), dtype=object)
    arr[0, :] = strings
    return arr


def write_devkit_mats(root: Path, names: list[str], train: list[dict], test: list[dict]):
    """The devkit's .mat files: class names, train annotations, labelled test annotations."""
    (root / "devkit").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "devkit" / "cars_meta.mat", {"class_names": mat_cell(names)})
    scipy.io.savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": mat_struct(train)})
    if test:
        scipy.io.savemat(root / "devkit" / "cars_test_annos_withlabels.mat",
                         {"annotations": mat_struct(test)})


# --------------------------------------------------------------------------- download

def convert_hf(dataset, root: Path | str) -> Path:
    """Write a Hugging Face ``DatasetDict`` (``image``, ``label`` ClassLabel; ``train`` and
    ``test`` splits, as ``tanganke/stanford_cars``) in the devkit layout.

    Bounding boxes are not in that dataset: they are written empty (unknown). The folder is
    built beside ``root`` and renamed into place at the end, so an interrupted conversion
    leaves nothing that loads as a dataset.
    """
    from tqdm.auto import tqdm

    root = Path(root)
    if root.exists():
        raise DataError(f"{root} already exists; remove it or point CARS_DATA_DIR at it")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".partial-", dir=root.parent))
    try:
        names = list(dataset["train"].features["label"].names)
        records = {}
        for split in ("train", "test"):
            folder = tmp / f"cars_{split}"
            folder.mkdir()
            records[split] = []
            for i, ex in enumerate(tqdm(dataset[split], desc=f"writing {split}", unit="img"), 1):
                fname = f"{i:05d}.jpg"
                ex["image"].convert("RGB").save(folder / fname, quality=95)
                records[split].append({**{b: np.empty((0, 0)) for b in BBOX},
                                       "class": int(ex["label"]) + 1, "fname": fname})
        write_devkit_mats(tmp, names, records["train"], records["test"])
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def download(root: Path | str | None = None) -> Path:
    """Download the full dataset (official split) from the Hugging Face hub into ``root``."""
    root = Path(root) if root is not None else paths.data_dir()
    if root.exists():
        print(f"{root} already exists: nothing to download.")
        return root
    advice = (f"Without network, copy Stanford Cars (devkit layout, or car_ims/ + cars_annos.mat, "
              f"or one folder per class) to {root}, or set CARS_DATA_DIR to its folder.")
    try:
        from huggingface_hub import HfApi

        HfApi().dataset_info(HF_DATASET, timeout=15)
    except Exception as exc:
        raise DataError(f"cannot reach the Hugging Face hub for {HF_DATASET} "
                        f"({type(exc).__name__}). {advice}") from exc
    from datasets import load_dataset

    return convert_hf(load_dataset(HF_DATASET), root)
