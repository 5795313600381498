"""Images to arrays: decode, RGB, resize (squash, center crop or bounding-box crop), cache.

:func:`load_images` turns the rows of a dataset table into one ``uint8`` array of shape
``(N, size, size, 3)``. JPEG files are decoded at a reduced scale when the target is small
(``PIL.Image.draft``), in parallel threads, with a progress bar. Results are cached on disk,
keyed by the file list (path, size, modification time, bounding box) and the parameters, so a
second run with the same inputs decodes nothing. Cache files are written to a temporary name
and renamed, so an interrupted run never leaves a cache file that loads as valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from common.core import atomic, paths
from common.data.table import BBOX

MODES = ("squash", "center", "bbox")
CACHE_VERSION = 2  # 2: images decoded upright (EXIF orientation)


def _crop_box(im: Image.Image, mode: str, bbox, margin: float, scale: float):
    """The region of ``im`` to resize, for ``mode``; ``bbox`` is in original 1-based pixels."""
    w, h = im.size
    if mode == "center":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        return (left, top, left + side, top + side)
    if mode == "bbox" and bbox is not None and not np.isnan(bbox).any():
        x1, y1, x2, y2 = ((bbox[0] - 1) * scale, (bbox[1] - 1) * scale,
                          bbox[2] * scale, bbox[3] * scale)
        mx, my = (x2 - x1) * margin, (y2 - y1) * margin
        box = (max(0, x1 - mx), max(0, y1 - my), min(w, x2 + mx), min(h, y2 + my))
        if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
            return box
    return None  # squash, or bbox unknown: the whole image


# EXIF orientation -> the transpose that shows the image upright
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def decode(path: str, size: int, mode: str = "squash", bbox=None, margin: float = 0.1,
           fast: bool = True) -> np.ndarray | None:
    """One image as ``uint8`` (size, size, 3) RGB, upright, or None when the file cannot be
    read (:func:`read_error` says why).

    ``fast`` lets the JPEG decoder scale down by 1/2, 1/4 or 1/8 while decoding, never
    below what the crop needs; ``fast=False`` is the plain decode-then-resize. Crops and
    bounding boxes are in the stored pixels; the EXIF orientation (a phone photo taken
    sideways) is applied to the result, which is the same square either way.
    """
    try:
        with Image.open(path) as im:
            full_w, full_h = im.size
            if fast and im.format == "JPEG":
                want = (size, size)
                if mode == "bbox" and bbox is not None and not np.isnan(bbox).any():
                    bw, bh = max(1.0, bbox[2] - bbox[0]), max(1.0, bbox[3] - bbox[1])
                    want = (int(np.ceil(full_w * size / bw)), int(np.ceil(full_h * size / bh)))
                elif mode == "center":
                    side = min(full_w, full_h)
                    want = (int(np.ceil(full_w * size / side)), int(np.ceil(full_h * size / side)))
                im.draft("RGB", want)
            orientation = im.getexif().get(0x0112)
            im = im.convert("RGB")
            box = _crop_box(im, mode, bbox, margin, im.size[0] / full_w)
            out = im.resize((size, size), Image.Resampling.BICUBIC, box=box)
            if orientation in _UPRIGHT:
                out = out.transpose(_UPRIGHT[orientation])
            return np.asarray(out, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def read_error(path: str) -> str | None:
    """Why ``path`` cannot be decoded, in a few words (None when it can)."""
    p = Path(path)
    if not p.exists():
        return "file not found"
    if not p.is_file():
        return "not a file"
    try:
        with Image.open(p) as im:
            im.load()
    except Image.DecompressionBombError:
        return (f"image too large: over Pillow's limit of {Image.MAX_IMAGE_PIXELS} pixels "
                "(a decompression bomb?); resize it first")
    except PermissionError:
        return "permission denied"
    except (Image.UnidentifiedImageError, SyntaxError):
        return "not an image Pillow can read"
    except (OSError, ValueError) as exc:
        return f"truncated or corrupt image ({exc})"
    return None


def _cache_key(table: pd.DataFrame, size: int, mode: str, margin: float) -> str:
    files = []
    for p, *bbox in table[["path", *BBOX]].itertuples(index=False):
        st = os.stat(p)
        files.append([p, st.st_size, st.st_mtime_ns, [None if np.isnan(b) else b for b in bbox]])
    blob = json.dumps({"v": CACHE_VERSION, "size": size, "mode": mode, "margin": margin,
                       "files": files}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _read_cache(path: Path, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path) as z:
            x, ok = z["x"], z["ok"]
        if len(ok) == n:
            return x, ok
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        pass
    warnings.warn(f"ignoring unreadable image cache {path}; decoding again")
    return None


def _write_cache(path: Path, x: np.ndarray, ok: np.ndarray) -> None:
    with atomic.atomic_file(path, "wb") as f:
        np.savez(f, x=x, ok=ok)


def load_images(table: pd.DataFrame, size: int, mode: str = "squash", margin: float = 0.1,
                cache: bool | Path = True, workers: int | None = None,
                progress: bool = True) -> tuple[np.ndarray, pd.DataFrame]:
    """Decode the images of ``table`` to ``uint8`` (N, size, size, 3).

    Returns the array and the table of the images it holds (unreadable files are skipped
    with a warning naming them; the returned table has them removed, index reset).
    ``cache``: True for :func:`common.paths.cache_dir`, a folder, or False for no cache.
    """
    from tqdm.auto import tqdm

    if mode not in MODES:
        raise ValueError(f"unknown resize mode {mode!r}: use one of {MODES}")
    if size < 1:
        raise ValueError(f"image size must be positive, got {size}")
    table = table.reset_index(drop=True)
    cache_file = None
    if cache is not False and len(table):
        folder = paths.cache_dir() if cache is True else Path(cache)
        cache_file = folder / f"images-{mode}-{size}-{_cache_key(table, size, mode, margin)}.npz"
    hit = _read_cache(cache_file, len(table)) if cache_file and cache_file.exists() else None
    if hit is not None:
        x, ok = hit
    else:
        bboxes = table[BBOX].to_numpy(dtype=float)
        x = np.zeros((len(table), size, size, 3), dtype=np.uint8)
        ok = np.zeros(len(table), dtype=bool)

        def work(i):
            return i, decode(table.at[i, "path"], size, mode, bboxes[i], margin)

        with ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
            for i, arr in tqdm(pool.map(work, range(len(table))), total=len(table),
                               desc=f"decoding {size}px {mode}", unit="img",
                               disable=not progress):
                if arr is not None:
                    x[i], ok[i] = arr, True
        if cache_file is not None:
            _write_cache(cache_file, x, ok)
    if not ok.all():
        bad = table.loc[~ok, "path"].tolist()
        warnings.warn(f"skipped {len(bad)} unreadable image(s): "
                      + ", ".join(Path(p).name for p in bad[:5]) + (" ..." if len(bad) > 5 else ""))
        x = x[ok]
    kept = table[ok].reset_index(drop=True)
    kept.attrs.update(table.attrs)
    return x, kept
