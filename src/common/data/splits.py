"""Class subsets and train / validation / test splits of a dataset table
(:func:`common.data.table.load_table`), seeded, stratified and disjoint by construction.

Labels are 0-based everywhere after this point: :func:`select_classes` numbers the kept
classes 0..K-1 in ascending official id order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import pandas as pd

from common.data.table import DataError


def select_classes(table: pd.DataFrame, class_ids: list[int] | None = None,
                   top_k: int | None = None) -> pd.DataFrame:
    """Keep some classes and relabel them 0..K-1 in ascending official id order.

    ``class_ids``: explicit official ids. ``top_k``: the k classes with most images (ties
    broken by the smaller id). With neither, all classes are kept (labels ``class_id - 1``
    when all 196 are there, else ranks).
    """
    counts = table["class_id"].value_counts()
    if class_ids is not None and top_k is not None:
        raise ValueError("give class_ids or top_k, not both")
    if class_ids is not None:
        unknown = sorted(set(class_ids) - set(counts.index))
        if unknown:
            raise DataError(
                f"unknown class id(s) {unknown}: this dataset has ids "
                f"{counts.index.min()}..{counts.index.max()} ({len(counts)} classes).")
        keep = sorted(set(int(c) for c in class_ids))
    elif top_k is not None:
        if not 1 <= top_k <= len(counts):
            raise DataError(f"top_k={top_k} but the dataset has {len(counts)} classes")
        order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        keep = sorted(cid for cid, _ in order[:top_k])
    else:
        keep = sorted(counts.index)
    out = table[table["class_id"].isin(keep)].copy()
    out["label"] = out["class_id"].map({cid: i for i, cid in enumerate(keep)})
    out.attrs.update(table.attrs)
    out.attrs["class_ids"] = keep
    return out.reset_index(drop=True)


def label_names(table: pd.DataFrame) -> dict[int, tuple[int, str]]:
    """0-based label -> (official class id, class name)."""
    pairs = table[["label", "class_id", "class_name"]].drop_duplicates().sort_values("label")
    return {int(r.label): (int(r.class_id), str(r.class_name)) for r in pairs.itertuples()}


@dataclass
class Splits:
    """Disjoint train / validation / test tables. ``fingerprints``: those of the whole study
    they were cut from (:func:`study_fingerprints`), kept by every cut of them: a network
    trained on one study's training images is recognised in another study."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    fingerprints: dict = field(default_factory=dict)
    crop: tuple = ("squash", 0.1)  # how every image of the study is made square: mode, margin

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def check(self) -> None:
        """Raise :class:`DataError` if an image belongs to two splits."""
        seen: dict[str, str] = {}
        for name, part in (("train", self.train), ("val", self.val), ("test", self.test)):
            for p in part["path"]:
                if p in seen:
                    raise DataError(f"image {p} is in both {seen[p]} and {name}")
                seen[p] = name


def sample(table: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """At most ``n`` rows of ``table``, drawn at random with ``seed`` (a dry run)."""
    if len(table) <= n:
        return table
    out = table.sample(n=n, random_state=seed).sort_values("path").reset_index(drop=True)
    out.attrs.update(table.attrs)
    return out


def budget(parts: Splits, cap_per_class: int | None = None, balance: bool = False,
           seed: int = 0) -> Splits:
    """A run's share of the training and validation sets: at most ``cap_per_class`` images
    per class in each (the 2022 report's 64), or, with ``balance``, every class cut to the
    smallest class of that set. The test set stays whole: every run of a task is scored on
    the same images."""
    if cap_per_class is None and not balance:
        return parts

    def cut(part):
        limit = int(part.groupby("class_id").size().min()) if balance else None
        if cap_per_class is not None:
            limit = cap_per_class if limit is None else min(limit, cap_per_class)
        out = (part.sample(frac=1.0, random_state=seed).groupby("class_id").head(limit)
               .sort_values("path", kind="stable").reset_index(drop=True))
        out.attrs.update(part.attrs)
        return out

    return Splits(cut(parts.train), cut(parts.val), parts.test, parts.fingerprints, parts.crop)


def row_ids(part: pd.DataFrame) -> list[str]:
    """The id of each image of a split, in its rows' order: its path relative to the dataset
    folder, which does not depend on where the dataset lies."""
    root = part.attrs.get("root")
    return [os.path.relpath(p, root) if root else p for p in part["path"]]


def image_ids(part: pd.DataFrame) -> list[str]:
    """The image ids of a split (:func:`row_ids`), sorted."""
    return sorted(row_ids(part))


def fingerprint_of(ids) -> str:
    """A short hash of a set of image ids (sorted here): the same images give the same
    fingerprint, and only they."""
    return hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()[:16]


def inputs_fingerprint(ids, crop: str | None) -> str:
    """The fingerprint of images as a model reads them: their ids and their ``crop`` (the
    same images cropped otherwise are other inputs); ids alone when ``crop`` is None (a
    results file written before crops were recorded)."""
    return fingerprint_of(ids if crop is None else [f"{i}\t{crop}" for i in ids])


def _min_per_class(part: pd.DataFrame, needed: int, why: str) -> None:
    counts = part.groupby(["class_id", "class_name"]).size()
    small = counts[counts < needed]
    if len(small):
        (cid, name), n = next(iter(small.items()))
        raise DataError(
            f"class {cid} ({name}) has only {n} image(s); {why} needs at least {needed} per "
            f"class ({len(small)} class(es) too small). Lower the split fractions or drop it.")


def _stratified(part: pd.DataFrame, fraction: float, seed: int):
    # imported here: the command line and the results contract import this module for its
    # fingerprints, and scikit-learn alone takes a second to import
    from sklearn.model_selection import train_test_split

    n_classes = part["label"].nunique()
    n_held = max(n_classes, round(len(part) * fraction))
    return train_test_split(part, test_size=n_held, random_state=seed, stratify=part["label"])


def make_splits(table: pd.DataFrame, val_fraction: float = 0.15, test_fraction: float = 0.15,
                seed: int = 0, use_official_test: bool = True) -> Splits:
    """Stratified, seeded train/val/test splits, disjoint by construction.

    ``test_fraction`` is a fraction of the whole table, ``val_fraction`` a fraction of what
    remains for training (the train+val pool). The official test split is the test set when
    the table has one (and ``use_official_test``); otherwise ``test_fraction`` of every class
    is held out. The result depends only on the table and ``seed``; a run's caps apply
    afterwards (:func:`budget`).
    """
    table = table.sort_values("path", kind="stable").reset_index(drop=True)
    official = use_official_test and (table["split"] == "test").any()
    if official:
        pool, test = table[table["split"] != "test"], table[table["split"] == "test"]
    else:
        _min_per_class(table, 3, "a train/val/test split")
        pool, test = _stratified(table, test_fraction, seed)
    _min_per_class(pool, 2, "a train/val split")
    train, val = _stratified(pool, val_fraction, seed)
    splits = Splits(*(p.sort_values("path", kind="stable").reset_index(drop=True)
                      for p in (train, val, test)))
    for part in (splits.train, splits.val, splits.test):
        part.attrs.update(table.attrs)
    splits.check()
    return splits


def restrict(parts: Splits, table: pd.DataFrame) -> Splits:
    """The splits cut down to the classes of ``table`` (:func:`select_classes`), relabelled
    as in ``table``: a task on fewer classes shares the split of all classes."""
    relabel = dict(zip(table["class_id"], table["label"]))

    def cut(part: pd.DataFrame) -> pd.DataFrame:
        out = part[part["class_id"].isin(relabel)].copy()
        out["label"] = out["class_id"].map(relabel)
        out.attrs.update(table.attrs)
        return out.reset_index(drop=True)

    out = Splits(cut(parts.train), cut(parts.val), cut(parts.test), parts.fingerprints, parts.crop)
    out.check()
    return out


def study_fingerprints(table: pd.DataFrame, whole: Splits) -> dict:
    """What identifies a study's data and split: ``data``, the fingerprint of every image of
    ``table`` with its class id; ``split``, that of every image of ``whole`` (all classes)
    with the part it is in. The same data folder split with the same seed and fractions
    gives the same two, and only it."""
    ids = [f"{i}\t{c}" for i, c in zip(row_ids(table), table["class_id"])]
    parts = [f"{name}\t{i}" for name in ("train", "val", "test")
             for i in row_ids(getattr(whole, name))]
    return {"data": fingerprint_of(ids), "split": fingerprint_of(parts)}
