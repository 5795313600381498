"""A small generated dataset in any of the three layouts, for tests and the smoke profile.

Its command line is ``python -m common synth``.
Each class is a coloured shape on a light noisy background (colour and shape tell the
class); bounding boxes are those of the shapes. A ``SYNTHETIC.json`` marker tells the
results that the data is generated.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from common.data.download import mat_cell, mat_struct, write_devkit_mats
from common.data.table import LOADERS, SYNTHETIC_MARKER, DataError


def _synth_image(rng: np.random.Generator, class_id: int, n_classes: int, size: int):
    """A light noisy background with one coloured shape; colour and shape tell the class."""
    import colorsys

    from PIL import ImageDraw

    hue = (class_id * 0.618033988749895) % 1.0
    colour = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.9, 0.9))
    noise = rng.integers(200, 256, size=(size, size, 3), dtype=np.uint8)
    im = Image.fromarray(noise)
    side = int(size * rng.uniform(0.45, 0.7))
    x1, y1 = (int(v) for v in rng.integers(0, size - side, size=2))
    box = (x1, y1, x1 + side - 1, y1 + side - 1)
    draw = ImageDraw.Draw(im)
    shape = class_id % 3
    if shape == 0:
        draw.ellipse(box, fill=colour)
    elif shape == 1:
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(x1, y1 + side - 1), (x1 + side - 1, y1 + side - 1),
                      (x1 + side // 2, y1)], fill=colour)
    return im, tuple(float(b + 1) for b in box)  # bboxes are 1-based like the devkit


def synth(root: Path | str, classes: int, per_class: int, layout: str = "devkit",
          test_per_class: int = 0, size: int = 64, seed: int = 0) -> Path:
    """Write a small generated dataset in ``layout`` (classes have ids 1..``classes``).

    ``root`` must not exist or be an empty folder: nothing is ever overwritten. The dataset
    is written into a temporary folder beside it, renamed to ``root`` at the end, so an
    interrupted run leaves nothing that loads as a dataset."""
    if layout not in LOADERS:
        raise DataError(f"unknown layout {layout!r}: use one of {sorted(LOADERS)}")
    if classes < 1 or per_class < 1 or test_per_class < 0:
        raise DataError("synth needs --classes >= 1, --per-class >= 1 and --test-per-class >= 0")
    if layout == "folders" and classes < 2:
        raise DataError("the folders layout needs --classes >= 2")
    if size < 8:
        raise DataError(f"--size must be at least 8 pixels, got {size}")
    final = Path(root)
    if final.exists() and not final.is_dir():
        raise DataError(f"{final} is a file, not a folder: give synth a new folder")
    if final.is_dir() and any(final.iterdir()):
        raise DataError(f"{final} is not empty: synth never overwrites a folder; give it a new "
                        "or empty folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        _write(root, classes, per_class, layout, test_per_class, size, seed)
        if final.is_dir():
            final.rmdir()  # empty, checked above
        os.replace(root, final)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return final


def _write(root: Path, classes: int, per_class: int, layout: str, test_per_class: int,
           size: int, seed: int) -> None:
    (root / SYNTHETIC_MARKER).write_text(json.dumps(
        {"generator": "common.data.synth", "classes": classes, "per_class": per_class,
         "test_per_class": test_per_class, "size": size, "seed": seed}) + "\n")
    rng = np.random.default_rng(seed)
    names = [f"Synthetic class {c:03d}" for c in range(1, classes + 1)]
    items = [(split, c) for c in range(1, classes + 1)
             for split in ["train"] * per_class + ["test"] * test_per_class]
    records = {"train": [], "test": []}
    for i, (split, cid) in enumerate(items, start=1):
        im, (x1, y1, x2, y2) = _synth_image(rng, cid, classes, size)
        if layout == "devkit":
            folder, fname = root / f"cars_{split}", f"{i:05d}.jpg"
        elif layout == "annos":
            folder, fname = root / "car_ims", f"{i:06d}.jpg"
        else:
            folder = root / split if test_per_class else root
            folder, fname = folder / names[cid - 1], f"{i:05d}.jpg"
        folder.mkdir(parents=True, exist_ok=True)
        im.save(folder / fname, quality=92)
        rec = {"bbox_x1": x1, "bbox_y1": y1, "bbox_x2": x2, "bbox_y2": y2, "class": cid}
        if layout == "annos":
            rec = {"relative_im_path": f"car_ims/{fname}", **rec, "test": int(split == "test")}
            records["train"].append(rec)
        else:
            records[split].append({**rec, "fname": fname})
    if layout == "devkit":
        write_devkit_mats(root, names, records["train"], records["test"])
    elif layout == "annos":
        scipy.io.savemat(root / "cars_annos.mat", {"annotations": mat_struct(records["train"]),
                                                   "class_names": mat_cell(names)})
