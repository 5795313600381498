"""Stanford Cars as one table, whatever its layout.

Three layouts are recognised automatically (see :func:`detect_layout`):

``devkit``
    the official download: ``cars_train/``, optional ``cars_test/``, ``devkit/cars_meta.mat``,
    ``devkit/cars_train_annos.mat`` and, optionally, ``cars_test_annos_withlabels.mat``
    (in ``devkit/`` or at the root) for the test labels;
``annos``
    the all-in-one archive: ``car_ims/`` and ``cars_annos.mat`` (``relative_im_path``,
    bounding boxes, ``class``, ``test``, and ``class_names``);
``folders``
    one folder per class, ``<root>/<split>/<class name>/*.jpg`` or ``<root>/<class name>/*.jpg``;
    class ids follow the sorted folder names (the official names sort in id order).

:func:`load_table` returns a :class:`pandas.DataFrame` with one row per image and the columns
``path``, ``class_id`` (official, 1-based), ``label`` (0-based), ``class_name``, ``bbox_x1``,
``bbox_y1``, ``bbox_x2``, ``bbox_y2`` (1-based pixels, NaN when unknown) and ``split``
(``train``/``val``/``test`` or None). Labels are 0-based everywhere after this point.

Class subsets and splits are in :mod:`common.data.splits`, generated data in
:mod:`common.data.synth`, the download in :mod:`common.data.download`; the command line is
``python -m common data summary DIR`` and ``python -m common data download [DIR]``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
from PIL import Image

from common.core import paths

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif"}
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "test": "test", "testing": "test"}
BBOX = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]
COLUMNS = ["path", "class_id", "label", "class_name", *BBOX, "split"]
TEN_CLASSES = [56, 79, 98, 119, 144, 161, 167, 171, 182, 191]
SYNTHETIC_MARKER = "SYNTHETIC.json"  # written by synth(): results say the data is generated


class DataError(Exception):
    """Bad dataset input; the message says what is wrong and what to do."""


# --------------------------------------------------------------------------- layouts

def detect_layout(root: Path | str) -> str:
    """Return ``devkit``, ``annos`` or ``folders`` for the dataset at ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"dataset folder not found: {root}. Put Stanford Cars there, set CARS_DATA_DIR "
            "to its folder, or run `make data` to download it.")
    if (root / SYNTHETIC_MARKER).is_file() and not any(
            (root / f).exists() for f in ("devkit", "cars_annos.mat", "car_ims")) \
            and not any(_images_in(d) for d in _subdirs(root)) and not _split_dirs(root):
        raise DataError(f"{root} holds an unfinished generated dataset: remove it and generate "
                        "it again (python -m common synth)")
    if (root / "devkit").is_dir() or (root / "cars_train").is_dir():
        for needed in (root / "devkit" / "cars_meta.mat",
                       root / "devkit" / "cars_train_annos.mat", root / "cars_train"):
            if not needed.exists():
                raise DataError(f"{root} looks like the devkit layout but {needed} is missing: "
                                "put the devkit files back (cars_meta.mat and "
                                "cars_train_annos.mat in devkit/, images in cars_train/)")
        return "devkit"
    if (root / "cars_annos.mat").is_file():
        return "annos"
    if any(_images_in(d) for d in _subdirs(root)) or any(
            _images_in(c) for d in _split_dirs(root) for c in _subdirs(d)):
        return "folders"
    raise DataError(
        f"unrecognised dataset layout in {root}: expected the devkit layout "
        "(cars_train/ + devkit/cars_meta.mat + devkit/cars_train_annos.mat), the all-in-one "
        "layout (car_ims/ + cars_annos.mat) or one folder of images per class.")


def _split_dirs(root: Path) -> list[Path]:
    return [d for d in _subdirs(root) if d.name.lower() in SPLIT_FOLDERS]


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _mat_records(path: Path, key: str = "annotations") -> list[dict]:
    """Read a MATLAB struct array as a list of dicts of Python scalars (None when empty)."""
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=True)
    except Exception as exc:  # scipy raises several types for a bad file
        raise DataError(f"cannot read {path} ({type(exc).__name__}: {exc}): the file is "
                        "corrupt or not a MATLAB file; copy it again from the devkit") from exc
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path} has no '{key}' variable (found: {found})")
    records = np.atleast_1d(mat[key])
    out = []
    for rec in records:
        row = {}
        for field in records.dtype.names:
            value = np.asarray(rec[field])
            row[field] = None if value.size == 0 else value.item()
        out.append(row)
    return out


def _mat_names(path: Path, key: str = "class_names") -> list[str]:
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True)
    except Exception as exc:  # scipy raises several types for a bad file
        raise DataError(f"cannot read {path} ({type(exc).__name__}: {exc}): the file is "
                        "corrupt or not a MATLAB file; copy it again from the devkit") from exc
    if key not in mat:
        raise DataError(f"{path} has no '{key}' variable")
    return [str(n).strip() for n in np.atleast_1d(mat[key])]


def _rows_from_records(records, names, image_path, split_of) -> list[dict]:
    rows = []
    for rec in records:
        cid = rec.get("class")
        rows.append({
            "path": str(image_path(rec)),
            "class_id": None if cid is None else int(cid),
            "class_name": None,
            **{b: (np.nan if rec.get(b) is None else float(rec[b])) for b in BBOX},
            "split": split_of(rec),
        })
    return rows


def _load_devkit(root: Path) -> tuple[list[dict], list[str]]:
    names = _mat_names(root / "devkit" / "cars_meta.mat")
    rows = _rows_from_records(_mat_records(root / "devkit" / "cars_train_annos.mat"), names,
                              lambda r: root / "cars_train" / r["fname"], lambda r: "train")
    test_annos = next((p for p in (root / "devkit" / "cars_test_annos_withlabels.mat",
                                   root / "cars_test_annos_withlabels.mat") if p.is_file()), None)
    if test_annos is not None and (root / "cars_test").is_dir():
        rows += _rows_from_records(_mat_records(test_annos), names,
                                   lambda r: root / "cars_test" / r["fname"], lambda r: "test")
    return rows, names


def _load_annos(root: Path) -> tuple[list[dict], list[str]]:
    mat = root / "cars_annos.mat"
    names = _mat_names(mat)
    rows = _rows_from_records(_mat_records(mat), names, lambda r: root / r["relative_im_path"],
                              lambda r: None if r.get("test") is None
                              else ("test" if int(r["test"]) else "train"))
    return rows, names


def _load_folders(root: Path) -> tuple[list[dict], list[str]]:
    top = _subdirs(root)
    split_dirs = _split_dirs(root)
    if split_dirs:
        stray = [d.name for d in top if d not in split_dirs]
        if stray:
            raise DataError(
                f"{root} has split folders ({', '.join(d.name for d in split_dirs)}) and other "
                f"folders beside them ({', '.join(stray[:5])}): put every class folder inside "
                "a split folder, or use no split folder at all")
        groups = [(SPLIT_FOLDERS[d.name.lower()], c) for d in split_dirs for c in _subdirs(d)]
    else:
        groups = [(None, c) for c in top]
    names = sorted({c.name for _, c in groups if _images_in(c)})
    if len(names) < 2:
        raise DataError(f"{root}: the one-folder-per-class layout needs at least two class "
                        f"folders with images, found {len(names)} ({', '.join(names) or 'none'})")
    groups = [(split, c) for split, c in groups if c.name in names]
    ids = {n: i + 1 for i, n in enumerate(names)}
    rows = [{"path": str(p), "class_id": ids[c.name], "class_name": None,
             **{b: np.nan for b in BBOX}, "split": split}
            for split, c in groups for p in _images_in(c)]
    return rows, names


LOADERS = {"devkit": _load_devkit, "annos": _load_annos, "folders": _load_folders}


def load_table(root: Path | str | None = None) -> pd.DataFrame:
    """Load the dataset at ``root`` (default :func:`common.paths.data_dir`) as one table.

    ``table.attrs`` holds ``root``, ``layout`` and ``class_names`` (official order).
    """
    root = Path(root) if root is not None else paths.data_dir()
    layout = detect_layout(root)
    rows, names = LOADERS[layout](root)
    for row in rows:
        try:
            row["path"].encode("utf-8")
        except UnicodeEncodeError:
            shown = row["path"].encode("utf-8", "surrogateescape").decode("utf-8",
                                                                         "backslashreplace")
            raise DataError(f"{shown} is not a valid UTF-8 path: rename it (the tables of this "
                            "project hold UTF-8 text)") from None
    if not rows:
        raise DataError(f"no annotated images found in {root} ({layout} layout)")
    table = pd.DataFrame(rows)
    unlabelled = table["class_id"].isna()
    if unlabelled.any():
        raise DataError(f"{int(unlabelled.sum())} annotation row(s) in {root} have no class id")
    table["class_id"] = table["class_id"].astype(int)
    bad = table.loc[~table["class_id"].between(1, len(names)), "class_id"]
    if len(bad):
        raise DataError(
            f"{len(bad)} annotation row(s) have class ids out of range 1..{len(names)} "
            f"(e.g. {sorted(set(bad.tolist()))[:5]}); the annotation and meta files disagree.")
    missing = [p for p in table["path"] if not os.path.isfile(p)]
    if missing:
        raise DataError(
            f"{len(missing)} annotated image(s) are missing in {root}, e.g. "
            f"{', '.join(Path(p).name for p in missing[:5])}. Re-extract the archive or fix "
            "the annotation file.")
    table["class_name"] = [names[i - 1] for i in table["class_id"]]
    table["label"] = table["class_id"] - 1
    table = table[COLUMNS].sort_values("path", kind="stable").reset_index(drop=True)
    table.attrs.update(root=str(root), layout=layout, class_names=names,
                       synthetic=(root / SYNTHETIC_MARKER).is_file())
    return table


# --------------------------------------------------------------------------- summary

def _readable(path: str) -> bool:
    """Whether the image decodes fully (a truncated JPEG does not)."""
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:
        return False


def summary(root: Path | str | None = None, verify: bool = True) -> dict:
    """What a user wants to know about a dataset folder, as a JSON-able dict."""
    table = load_table(root)
    counts = table["class_id"].value_counts()
    out = {
        "root": table.attrs["root"],
        "layout": table.attrs["layout"],
        "n_images": int(len(table)),
        "n_classes": int(len(counts)),
        "synthetic": table.attrs["synthetic"],
        "min_images_per_class": int(counts.min()),
        "max_images_per_class": int(counts.max()),
        "bounding_boxes": bool(table["bbox_x1"].notna().all()),
    }
    if table["split"].notna().any():
        out["split_sizes"] = {str(k): int(v) for k, v in table["split"].value_counts().items()}
    if verify:
        with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
            ok = list(pool.map(_readable, table["path"]))
        out["corrupt_images"] = int(len(ok) - sum(ok))
    return out
