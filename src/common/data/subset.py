"""A small copy of a devkit-layout Stanford Cars folder: some classes only, in the same
layout, with their official class ids, names and bounding boxes, within a byte budget (the
data that travels to a rented GPU box, ``make gpu-bundle``).

A one-folder-per-class copy would not do: its classes would be numbered 1..10 and lose their
boxes, while the study selects the 10 classes by their official ids
(:func:`common.data.splits.select_classes`) and crops on the boxes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from common.data.download import write_devkit_mats
from common.data.table import DataError, _mat_names, _mat_records, detect_layout

TEST_ANNOS = ("devkit/cars_test_annos_withlabels.mat", "cars_test_annos_withlabels.mat")


def _kept(records: list[dict], folder: Path, class_ids: set[int], budget: int | None,
          share: int) -> list[dict]:
    """The records of ``class_ids`` whose images are in ``folder``, the same number per
    class, as many as fit in ``budget`` bytes (None: all)."""
    by_class: dict[int, list[dict]] = {}
    for rec in records:
        if int(rec["class"]) in class_ids and (folder / str(rec["fname"])).is_file():
            by_class.setdefault(int(rec["class"]), []).append(rec)
    rounds = max((len(v) for v in by_class.values()), default=0)
    kept, used = [], 0
    for i in range(rounds):  # one image of each class at a time: classes stay balanced
        for cid in sorted(by_class):
            if i < len(by_class[cid]):
                rec = by_class[cid][i]
                size = (folder / str(rec["fname"])).stat().st_size
                if budget is not None and used + size > budget // share:
                    return kept
                kept.append(rec)
                used += size
    return kept


def write_subset(root: Path | str, dest: Path | str, class_ids, max_bytes: int | None = None
                 ) -> dict:
    """Copy the images of ``class_ids`` from the devkit folder ``root`` into ``dest``
    (replaced), with ``devkit/cars_meta.mat`` (all 196 names, so ids keep their meaning) and
    the annotation files cut to those images, boxes and ids unchanged. The official test
    split comes along when ``root`` has it (with labels). ``max_bytes``: the images' budget,
    split evenly between the splits there are. Returns the counts and the bytes written."""
    root, dest = Path(root), Path(dest)
    if detect_layout(root) != "devkit":
        raise DataError(f"{root}: a subset keeps the devkit layout (cars_train/, devkit/); "
                        "point it at the official devkit folder")
    ids = {int(c) for c in class_ids}
    names = _mat_names(root / "devkit" / "cars_meta.mat")
    test_annos = next((root / p for p in TEST_ANNOS if (root / p).is_file()), None)
    with_test = test_annos is not None and (root / "cars_test").is_dir()
    share = 2 if with_test else 1
    train = _kept(_mat_records(root / "devkit" / "cars_train_annos.mat"), root / "cars_train",
                  ids, max_bytes, share)
    test = _kept(_mat_records(test_annos), root / "cars_test", ids, max_bytes, share) \
        if with_test else []
    if dest.exists():
        shutil.rmtree(dest)
    total = 0
    for split, records in (("cars_train", train), ("cars_test", test)):
        for rec in records:
            (dest / split).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / split / str(rec["fname"]), dest / split / str(rec["fname"]))
            total += (dest / split / str(rec["fname"])).stat().st_size
    write_devkit_mats(dest, names, train, test)
    total += sum(f.stat().st_size for f in (dest / "devkit").iterdir())
    return {"classes": sorted({int(r["class"]) for r in train}), "train": len(train),
            "test": len(test), "bytes": total}
