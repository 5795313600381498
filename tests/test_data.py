"""The data layer: layouts, subsets, splits, image arrays, cache, bad input, CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import scipy.io
from PIL import Image

from common.config.study import TEN_CLASSES
from common.data import download, images, splits, synth
from common.data import table as data
from common.__main__ import main as cli
from conftest import task_of


# ---------------------------------------------------------------- layouts

@pytest.mark.parametrize("layout", ["devkit", "annos", "folders"])
def test_each_layout_loads_to_the_same_table(tmp_path, layout):
    root = synth.synth(tmp_path / layout, classes=4, per_class=5, test_per_class=2,
                      layout=layout, size=32)
    table = data.load_table(root)
    assert table.attrs["layout"] == layout == data.detect_layout(root)
    assert table.attrs["synthetic"] is True
    assert list(table.columns) == data.COLUMNS
    assert len(table) == 4 * 7
    assert sorted(table["class_id"].unique()) == [1, 2, 3, 4]
    assert (table["label"] == table["class_id"] - 1).all()
    assert table["split"].value_counts().to_dict() == {"train": 20, "test": 8}
    assert set(table["class_name"]) == {f"Synthetic class {i:03d}" for i in range(1, 5)}
    has_bbox = table[data.BBOX].notna().all(axis=1)
    assert has_bbox.all() if layout != "folders" else not has_bbox.any()
    assert all(os.path.isfile(p) for p in table["path"])


def test_folders_without_split_and_devkit_without_test(tmp_path):
    root = synth.synth(tmp_path / "f", classes=3, per_class=4, layout="folders", size=32)
    table = data.load_table(root)
    assert len(table) == 12 and table["split"].isna().all()
    root = synth.synth(tmp_path / "d", classes=3, per_class=4, layout="devkit", size=32)
    assert set(data.load_table(root)["split"]) == {"train"}


def test_devkit_bboxes_are_read(synth_root):
    table = data.load_table(synth_root)
    row = table.iloc[0]
    w, h = Image.open(row.path).size
    assert 1 <= row.bbox_x1 < row.bbox_x2 <= w and 1 <= row.bbox_y1 < row.bbox_y2 <= h


# ---------------------------------------------------------------- subsets

def test_select_explicit_ids_relabels_zero_based(synth_root):
    table = data.load_table(synth_root)
    sub = splits.select_classes(table, class_ids=[5, 2])
    assert sorted(sub["class_id"].unique()) == [2, 5]
    assert dict(zip(sub["class_id"], sub["label"])) == {2: 0, 5: 1}
    assert splits.label_names(sub) == {0: (2, "Synthetic class 002"), 1: (5, "Synthetic class 005")}


def test_experiments_on_fewer_classes_share_the_split_of_all_classes(tmp_path):
    """01 (every class) and 02 (10 classes) share one split: no test image of the subset was
    ever a training or validation image of the whole set."""
    root = synth.synth(tmp_path / "cars", classes=12, per_class=12, size=24)  # no official test
    kwargs = {"val_fraction": 0.15, "test_fraction": 0.2, "seed": 42}
    whole = task_of(root, None, **kwargs).parts
    ten = task_of(root, [2, 3, 5, 7, 11], **kwargs)
    sub, labels = ten.parts, ten.labels
    assert set(sub.test["path"]) <= set(whole.test["path"])
    assert not set(sub.test["path"]) & (set(whole.train["path"]) | set(whole.val["path"]))
    assert set(sub.train["path"]) <= set(whole.train["path"])
    assert sorted(sub.test["class_id"].unique()) == [2, 3, 5, 7, 11]
    assert sub.train["label"].between(0, 4).all() and list(labels) == [0, 1, 2, 3, 4]


def test_shared_split_on_the_real_dataset(shared_data):
    kwargs = {"val_fraction": 0.15, "test_fraction": 0.2, "seed": 42}
    everything = task_of(shared_data, None, **kwargs)
    whole, ten = everything.parts, task_of(shared_data, TEN_CLASSES, **kwargs).parts
    trained_on = set(whole.train["path"]) | set(whole.val["path"])
    assert len(ten.test) > 80 and not set(ten.test["path"]) & trained_on
    # 02 and 04 score exactly the 10 classes' images of the test set of 01, 03 and 05
    assert set(ten.test["path"]) == set(whole.test[whole.test["class_id"].isin(TEN_CLASSES)]
                                        ["path"])
    assert everything.test_set()["images"] == len(whole.test) == 1435


def test_top_k_breaks_ties_by_smaller_id(synth_root):
    table = data.load_table(synth_root)
    # drop images so that class 4 has the most, then 1/2/3/5/6 tie
    table = table[~((table["class_id"] != 4) & (table.index % 14 == 0))]
    table = pd.concat([table, table[table["class_id"] == 4].head(1).assign(path="dup")])
    counts = table["class_id"].value_counts()
    top = splits.select_classes(table, top_k=3).attrs["class_ids"]
    expected = sorted(sorted(counts.index, key=lambda c: (-counts[c], c))[:3])
    assert top == expected and 4 in top


def test_unknown_class_id_is_a_clear_error(synth_root):
    table = data.load_table(synth_root)
    with pytest.raises(data.DataError, match=r"unknown class id\(s\) \[99\]"):
        splits.select_classes(table, class_ids=[1, 99])


# ---------------------------------------------------------------- splits

def test_official_test_split_is_used_and_splits_are_disjoint(synth_root):
    table = data.load_table(synth_root)
    s = splits.make_splits(table, val_fraction=0.2, seed=1)
    assert set(s.test["split"]) == {"test"} and len(s.test) == 24
    assert len(s.train) + len(s.val) == 60
    all_paths = pd.concat([s.train.path, s.val.path, s.test.path])
    assert all_paths.is_unique
    s.check()


def test_splits_are_stratified_and_reproducible(tmp_path):
    root = synth.synth(tmp_path / "c", classes=5, per_class=20, layout="annos", size=24)
    table = data.load_table(root)
    table["split"] = None
    a = splits.make_splits(table, val_fraction=0.25, test_fraction=0.2, seed=7)
    b = splits.make_splits(table.sample(frac=1, random_state=3), val_fraction=0.25,
                         test_fraction=0.2, seed=7)
    c = splits.make_splits(table, val_fraction=0.25, test_fraction=0.2, seed=8)
    assert a.sizes() == {"train": 60, "val": 20, "test": 20}
    for part in (a.val, a.test):
        assert (part["class_id"].value_counts() == 4).all()
    assert a.val["path"].tolist() == b.val["path"].tolist()  # row order does not matter
    assert a.val["path"].tolist() != c.val["path"].tolist()  # the seed does


def test_cap_and_balance_apply_to_train_and_val_only(synth_root):
    table = data.load_table(synth_root)
    # make classes unequal: class 1 keeps 4 train images
    drop = table[(table["class_id"] == 1) & (table["split"] == "train")].index[4:]
    table = table.drop(drop)
    whole = splits.make_splits(table, val_fraction=0.25, seed=0)
    capped = splits.budget(whole, cap_per_class=2, seed=0)
    assert set(capped.train.groupby("class_id").size()) == {2}
    assert capped.val.groupby("class_id").size().max() <= 2
    assert capped.test.equals(whole.test) and len(capped.test) == 24
    balanced = splits.budget(whole, balance=True, seed=0)
    smallest = whole.train.groupby("class_id").size().min()
    assert set(balanced.train.groupby("class_id").size()) == {smallest}
    assert balanced.test.equals(whole.test)


def test_check_detects_a_leak(synth_root):
    s = splits.make_splits(data.load_table(synth_root), seed=0)
    leaky = splits.Splits(s.train, pd.concat([s.val, s.train.head(1)]), s.test)
    with pytest.raises(data.DataError, match="in both train and val"):
        leaky.check()


def test_too_small_class_is_named(tmp_path):
    root = synth.synth(tmp_path / "s", classes=3, per_class=6, layout="devkit", size=24)
    table = data.load_table(root)
    table = table.drop(table[table["class_id"] == 2].index[1:])
    with pytest.raises(data.DataError, match=r"class 2 \(Synthetic class 002\) has only 1 image"):
        splits.make_splits(table, seed=0)


# ---------------------------------------------------------------- images

def test_modes_give_square_rgb_uint8(synth_root, tmp_path):
    table = data.load_table(synth_root).head(6)
    for mode in images.MODES:
        x, kept = images.load_images(table, 20, mode, cache=False, progress=False)
        assert x.shape == (6, 20, 20, 3) and x.dtype == np.uint8 and len(kept) == 6


def test_bbox_mode_crops_to_the_object(tmp_path):
    # a red square on white at a known place: the bbox crop is almost all red
    im = np.full((100, 200, 3), 255, np.uint8)
    im[20:60, 120:160] = (255, 0, 0)
    path = tmp_path / "a.jpg"
    Image.fromarray(im).save(path, quality=95)
    row = pd.DataFrame([{"path": str(path), "bbox_x1": 121.0, "bbox_y1": 21.0,
                         "bbox_x2": 160.0, "bbox_y2": 60.0}])
    crop = images.decode(str(path), 16, "bbox", row[data.BBOX].to_numpy(float)[0], margin=0.0)
    squash = images.decode(str(path), 16, "squash")
    red = lambda a: ((a[..., 0] > 200) & (a[..., 1] < 80)).mean()  # noqa: E731
    assert red(crop) > 0.9 and red(squash) < 0.2


def test_grayscale_and_cmyk_become_rgb(tmp_path):
    Image.new("L", (40, 30), 128).save(tmp_path / "g.jpg")
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    Image.new("P", (40, 30), 3).save(tmp_path / "p.png")
    for name in ("g.jpg", "c.jpg", "p.png"):
        arr = images.decode(str(tmp_path / name), 8, "center")
        assert arr.shape == (8, 8, 3)
    assert images.decode(str(tmp_path / "c.jpg"), 8, "squash")[..., 0].mean() > 200  # red


def test_fast_decode_matches_plain_decode_closely(synth_root):
    path = data.load_table(synth_root)["path"][0]
    fast = images.decode(path, 16, fast=True).astype(int)
    plain = images.decode(path, 16, fast=False).astype(int)
    assert np.abs(fast - plain).mean() < 12


def test_corrupt_image_is_skipped_with_a_warning(synth_root, tmp_path):
    table = data.load_table(synth_root).head(5).copy()
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(open(table["path"][0], "rb").read()[:200])  # truncated JPEG
    table.loc[1, "path"] = str(bad)
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):
        x, kept = images.load_images(table, 16, cache=False, progress=False)
    assert len(x) == len(kept) == 4 and str(bad) not in set(kept["path"])


def test_cache_hit_decodes_nothing_and_invalidates(synth_root, tmp_path, monkeypatch):
    table = data.load_table(synth_root).head(8)
    cache = tmp_path / "c"
    x1, _ = images.load_images(table, 16, cache=cache, progress=False)
    assert len(list(cache.glob("*.npz"))) == 1
    calls = []
    real = images.decode
    monkeypatch.setattr(images, "decode", lambda *a, **k: calls.append(a) or real(*a, **k))
    x2, _ = images.load_images(table, 16, cache=cache, progress=False)
    assert calls == [] and np.array_equal(x1, x2)
    images.load_images(table, 17, cache=cache, progress=False)  # other parameters
    assert len(calls) == 8
    os.utime(table["path"][0], ns=(1, 1))  # a changed file invalidates
    calls.clear()
    images.load_images(table, 16, cache=cache, progress=False)
    assert len(calls) == 8


def test_interrupted_cache_write_leaves_nothing_valid(synth_root, tmp_path, monkeypatch):
    table = data.load_table(synth_root).head(4)
    cache = tmp_path / "c"

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        images.load_images(table, 16, cache=cache, progress=False)
    assert list(cache.iterdir()) == []
    monkeypatch.undo()
    # a truncated cache file is ignored with a warning, then rewritten
    images.load_images(table, 16, cache=cache, progress=False)
    (f,) = cache.glob("*.npz")
    f.write_bytes(f.read_bytes()[:100])
    with pytest.warns(UserWarning, match="ignoring unreadable image cache"):
        x, _ = images.load_images(table, 16, cache=cache, progress=False)
    assert x.shape == (4, 16, 16, 3)


# ---------------------------------------------------------------- bad input

def test_missing_folder_and_unknown_layout(tmp_path):
    with pytest.raises(data.DataError, match="dataset folder not found.*CARS_DATA_DIR"):
        data.load_table(tmp_path / "nope")
    (tmp_path / "empty" / "x").mkdir(parents=True)
    (tmp_path / "empty" / "x" / "notes.txt").write_text("hi")
    with pytest.raises(data.DataError, match="unrecognised dataset layout"):
        data.load_table(tmp_path / "empty")


def test_missing_images_are_counted_and_named(tmp_path):
    root = synth.synth(tmp_path / "m", classes=2, per_class=4, layout="devkit", size=24)
    for name in ("00001.jpg", "00002.jpg", "00003.jpg"):
        (root / "cars_train" / name).unlink()
    with pytest.raises(data.DataError, match=r"3 annotated image\(s\) are missing.*00001.jpg"):
        data.load_table(root)


def test_class_ids_out_of_range(tmp_path):
    root = synth.synth(tmp_path / "r", classes=2, per_class=2, layout="devkit", size=24)
    mat = root / "devkit" / "cars_train_annos.mat"
    annos = scipy.io.loadmat(mat)["annotations"]
    annos[0, 0]["class"] = np.array([[7]])
    scipy.io.savemat(mat, {"annotations": annos})
    with pytest.raises(data.DataError, match=r"out of range 1\.\.2 \(e\.g\. \[7\]\)"):
        data.load_table(root)


# ---------------------------------------------------------------- CLI and download

def test_cli_summary_and_synth(tmp_path, capsys):
    assert cli(["synth", str(tmp_path / "s"), "--classes", "3", "--per-class", "4",
                       "--layout", "annos", "--size", "24"]) == 0
    capsys.readouterr()
    (tmp_path / "s" / "car_ims" / "000002.jpg").write_bytes(b"not a jpeg")
    assert cli(["data", "summary", str(tmp_path / "s")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layout"] == "annos" and out["n_images"] == 12 and out["n_classes"] == 3
    assert out["min_images_per_class"] == out["max_images_per_class"] == 4
    assert out["split_sizes"] == {"train": 12} and out["corrupt_images"] == 1


def test_cli_bad_input_is_one_line_not_a_traceback(tmp_path, capsys):
    assert cli(["data", "summary", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset folder not found") and "Traceback" not in err


def test_convert_hf_writes_a_devkit_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    names = ["Alpha Coupe 2012", "Beta Sedan 2010", "Gamma SUV 2007"]
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=names)})

    def split(n):
        ims = [Image.new("RGB", (30 + i, 20), (40 * i, 0, 0)) for i in range(n)]
        return datasets.Dataset.from_dict({"image": ims, "label": [i % 3 for i in range(n)]},
                                          features=features)

    dd = datasets.DatasetDict({"train": split(6), "test": split(3)})
    root = download.convert_hf(dd, tmp_path / "cars")
    table = data.load_table(root)
    assert table.attrs["layout"] == "devkit"
    assert table["split"].value_counts().to_dict() == {"train": 6, "test": 3}
    assert table.attrs["class_names"] == names
    assert sorted(table["class_id"].unique()) == [1, 2, 3]
    assert table["bbox_x1"].isna().all()
    assert not list(tmp_path.glob("*.partial-*"))
    with pytest.raises(data.DataError, match="already exists"):
        download.convert_hf(dd, root)


def test_download_without_network_fails_fast_with_advice(tmp_path, monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    # huggingface_hub reads HF_HUB_OFFLINE when it is imported: patch what it read, and point
    # it at a closed port, so that this test can never download anything
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(data.DataError, match="cannot reach the Hugging Face hub.*CARS_DATA_DIR"):
        download.download(tmp_path / "cars")
    assert not (tmp_path / "cars").exists()


# ---------------------------------------------------------------- the real dataset

def test_shared_dataset_summary(shared_data):
    out = data.summary(shared_data, verify=False)
    assert out["layout"] == "devkit" and out["n_images"] == 7176 and out["n_classes"] == 196
    assert out["synthetic"] is False
    ten = splits.select_classes(data.load_table(shared_data), class_ids=data.TEN_CLASSES)
    assert len(ten) == 429 and ten["label"].max() == 9


def test_the_test_fingerprint_names_the_images_not_their_folder(tmp_path):
    import shutil

    root = synth.synth(tmp_path / "a" / "cars", classes=4, per_class=10, size=24)
    moved = tmp_path / "b" / "cars"
    shutil.copytree(root, moved)
    first, second = task_of(root), task_of(moved)
    assert first.test_set() == second.test_set()
    other = task_of(root, seed=1).test_set()
    assert other["images"] == first.test_set()["images"]
    assert other["fingerprint"] != first.test_set()["fingerprint"]


def test_a_dry_run_keeps_the_ten_classes_test_inside_the_whole_test(tmp_path):
    from common.config.schema import Study
    from common.data.task import load_task

    root = synth.synth(tmp_path / "cars", classes=12, per_class=12, size=24)
    study = Study(data_dir=str(root), split_seed=0, ten_classes=[2, 3, 5])
    limits = {"train": 8, "evaluation": 6}
    whole, ten = load_task(study, "all", limits), load_task(study, "ten", limits)
    assert len(whole.parts.test) == 6 and 0 < len(ten.parts.test) <= 3
    inside = whole.parts.test[whole.parts.test["class_id"].isin([2, 3, 5])]
    assert sorted(ten.parts.test["path"]) == sorted(inside["path"])


def test_the_study_crop_is_everyones_and_bbox_needs_boxes(tmp_path, synth_root):
    """One crop for the whole study (its file): the test fingerprint covers it, the results
    record it with the images that had a box, and bbox on data without boxes is refused in
    one line unless missing_boxes: whole."""
    from common.config.schema import Study
    from common.data.task import load_task

    squash = load_task(Study(data_dir=str(synth_root), split_seed=0), "all")
    bbox = load_task(Study(data_dir=str(synth_root), split_seed=0, crop_mode="bbox"), "all")
    ten = load_task(Study(data_dir=str(synth_root), split_seed=0, crop_mode="bbox",
                          ten_classes=[2, 5]), "ten")
    assert bbox.parts.crop == ten.parts.crop == ("bbox", 0.1)
    assert ten.budget(2, seed=0).crop == ("bbox", 0.1)  # every cut of the split keeps it
    assert squash.test_set()["fingerprint"] != bbox.test_set()["fingerprint"]
    assert bbox.test_set()["crop"] == "crop bbox 0.1" and squash.test_set()["crop"] == \
        "crop squash"
    record = bbox.record()["crop"]
    assert record == {"mode": "bbox", "margin": 0.1, "images_with_box": len(bbox.table),
                      "images": len(bbox.table)}
    folders = synth.synth(tmp_path / "folders", classes=4, per_class=6, layout="folders",
                          size=32)
    with pytest.raises(data.DataError) as err:
        load_task(Study(data_dir=str(folders), crop_mode="bbox"), "all")
    line = str(err.value)
    assert "\n" not in line and "have no bounding box" in line
    assert "crop_mode: squash" in line and "missing_boxes: whole" in line
    whole = load_task(Study(data_dir=str(folders), crop_mode="bbox", missing_boxes="whole"),
                      "all")
    assert whole.record()["crop"]["images_with_box"] == 0
