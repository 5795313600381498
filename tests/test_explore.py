"""The exploration journal (explorations/*.csv) and `python -m common explore`: rows of
validation scores only, written whole or not at all, and an exploration run that never
reads the test set."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.core import paths
from common.data import synth
from common.results import journal


def _row(**changes):
    row = {"date": "2026-12-02 10:00", "commit": "abc1234", "notebook": "02_vit_scratch_10classes",
           "run": "r",
           "settings": journal.settings_text({"epochs": 3}), "seed": 0,
           "val_accuracy": 0.5, "train_seconds": 10.0}
    return {**row, **changes}


def test_journal_rows_append_under_one_header(tmp_path):
    path = tmp_path / "sub" / "j.csv"
    journal.append(path, _row())
    journal.append(path, _row(seed=1, val_accuracy=0.7, note="a, quoted \"note\""))
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(journal.COLUMNS) and len(lines) == 3
    table = journal.read(path)
    assert table["val_accuracy"].tolist() == [0.5, 0.7]
    assert table["note"].tolist() == ["", 'a, quoted "note"']
    assert table["commit"].tolist() == ["abc1234", "abc1234"]


def test_journal_refuses_a_test_figure_and_keeps_the_file(tmp_path):
    path = tmp_path / "j.csv"
    journal.append(path, _row())
    before = path.read_bytes()
    with pytest.raises(ValueError, match="test_accuracy.*never a test figure"):
        journal.append(path, _row(test_accuracy=0.9))
    assert path.read_bytes() == before


def test_journal_summary_groups_seeds_best_mean_first(tmp_path):
    path = tmp_path / "j.csv"
    for seed, acc in enumerate([0.4, 0.6, 0.5]):
        journal.append(path, _row(seed=seed, val_accuracy=acc))
    journal.append(path, _row(settings=journal.settings_text({"epochs": 9}), val_accuracy=0.9))
    summary = journal.summary(journal.read(path))
    assert summary["settings"].tolist() == ['{"epochs":9}', '{"epochs":3}']
    assert summary.loc[1, ["seeds", "val_min", "val_max"]].tolist() == [3, 0.4, 0.6]
    assert summary.loc[1, "val_mean"] == pytest.approx(0.5)


def test_journal_read_refuses_another_csv(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not an exploration journal"):
        journal.read(path)


def test_committed_journals_hold_validation_figures_only():
    files = sorted((paths.ROOT / "explorations").glob("*.csv"))
    for file in files:
        table = journal.read(file)
        assert list(table.columns) == journal.COLUMNS, file
        assert table["val_accuracy"].between(0, 1).all(), file


def test_committed_journal_rows_record_every_setting_they_ran_with():
    """Each row's ran_with is a whole run of its notebook's schema (so a change to the params
    file never changes what the row says), and agrees with the row's epochs."""
    import json

    from common.config import schema

    for file in sorted((paths.ROOT / "explorations").glob("*.csv")):
        for _, row in journal.read(file).iterrows():
            values = json.loads(row["ran_with"])
            run: dict = {}
            for key, value in values.items():
                if key not in journal.SWITCHES:
                    group, _, leaf = key.rpartition(".")
                    (run.setdefault(group, {}) if group else run)[leaf] = value
            cfg = schema.KerasVitRun(name=row["run"], **run)
            assert journal.flat(cfg.model_dump(mode="json", exclude={"name"})) == {
                k: v for k, v in values.items() if k not in journal.SWITCHES}, file.name
            assert cfg.epochs == row["epochs"], (file.name, row["date"])


def test_a_journal_row_with_a_key_outside_its_group_is_refused(tmp_path):
    """Rows name a group's key with its group (network.image_size), as -p does; a row with
    the flat name of before the groups is refused in one line naming the file, the row and
    the key, never read as the group's key."""
    path = tmp_path / "j.csv"
    journal.append(path, _row(settings=journal.settings_text({"network.image_size": 64})))
    assert len(journal.read(path)) == 1
    journal.append(path, _row(settings=journal.settings_text({"image_size": 64})))
    with pytest.raises(ValueError) as err:
        journal.read(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "row 3" in message
    assert "settings key 'image_size' is not a setting" in message


def test_a_rows_settings_are_read_against_the_params_file_of_today():
    """What a row changed is computed from its ran_with when the journal is read: the run
    as the file has it reads as {}, another value as that key, whatever the file becomes."""
    from common.config import loading

    params = loading.load("01_vit_scratch", "cpu")
    cfg = next(r for r in params.runs if r.name == "improved-hybrid")
    same = journal.ran_with(params, cfg)
    mixed = same["mixed_precision"]
    rows = [_row(notebook="01_vit_scratch", run="improved-hybrid", settings="{}",
                 ran_with=journal.settings_text(same)),
            _row(notebook="01_vit_scratch", run="improved-hybrid", settings="{}",
                 ran_with=journal.settings_text({**same, "epochs": same["epochs"] + 1,
                                                 "mixed_precision": not mixed})),
            _row(notebook="01_vit_scratch", run="gone", ran_with=journal.settings_text(
                {"epochs": 3})),
            _row(notebook="01_vit_scratch", run="improved-hybrid"),  # no ran_with
            # the same recipe on another thread count: the same setting
            _row(notebook="01_vit_scratch", run="improved-hybrid", settings="{}",
                 ran_with=journal.settings_text({**same, "torch_threads": 7}))]
    import pandas as pd

    got = journal.changes(pd.DataFrame(rows)).tolist()
    assert got == ["{}", journal.settings_text({"epochs": same["epochs"] + 1,
                                                "mixed_precision": not mixed}),
                   '{"epochs":3}', '{"epochs":3}', "{}"]
    seeds = journal.summary(pd.DataFrame(rows).assign(seed=range(len(rows))))
    assert seeds.loc[seeds["settings"] == "{}", "seeds"].tolist() == [2]


@pytest.mark.slow
def test_an_exploration_run_writes_one_row_keeps_its_network_and_never_reads_the_test_set(
        tmp_path):
    root = tmp_path / "synth"
    synth.synth(root, classes=12, per_class=8, test_per_class=2, size=32)
    out = tmp_path / "j.csv"
    # a sitecustomize-free probe: the command runs with load_images wrapped to record the
    # images it loads
    probe = (
        "import sys, json; from common.data import images; seen = []\n"
        "real = images.load_images\n"
        "def spy(table, *a, **k):\n"
        "    seen.extend(table['path'].astype(str)); return real(table, *a, **k)\n"
        "images.load_images = spy\n"
        "from common.__main__ import main\n"
        "code = main(['explore', *sys.argv[1:]])\n"
        f"open({str(tmp_path / 'seen.json')!r}, 'w').write(json.dumps(seen))\n"
        "sys.exit(code)\n")
    proc = subprocess.run(
        [sys.executable, "-c", probe, "02_vit_scratch_10classes", "24px-patch6", "--profile",
         "smoke", "--data-dir", str(root), "-p", "epochs", "1", "--seeds", "0", "1",
         "--journal", str(out), "--quiet", "--note", "probe", "--keep", str(tmp_path / "kept")],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = journal.read(out)
    assert table["seed"].tolist() == [0, 1]
    assert table["settings"].tolist() == ['{"epochs":1}'] * 2
    assert set(table["notebook"]) == {"02_vit_scratch_10classes"}
    assert table["val_accuracy"].between(0, 1).all() and (table["val_images"] > 0).all()
    import json

    from conftest import task_of

    task = task_of(root, class_ids=[2, 3, 5, 7, 11], val_fraction=0.2, seed=0)
    test_paths = set(task.parts.test["path"].astype(str))
    seen = set(json.loads((tmp_path / "seen.json").read_text()))
    assert seen and not (seen & test_paths)
    # --keep: the last seed's network, as a model folder a later run can start from
    from common.models import folder as model_folder

    kept = tmp_path / "kept"
    assert model_folder.read_labels(kept) == task.labels
    assert model_folder.read_preprocess(kept)["image_size"] == 24
    import zipfile

    with zipfile.ZipFile(kept / model_folder.KERAS_FILE) as archive:
        assert '"logits"' in archive.read("config.json").decode()


def test_an_exploration_of_a_missing_run_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "common", "explore", "02_vit_scratch_10classes",
                           "nope", "--profile", "smoke", "--journal", str(tmp_path / "j.csv")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: params/smoke/02_vit_scratch_10classes.yaml: no run named 'nope'; the runs "
        "are 24px-patch6, 24px-patch8, improved"]
    assert not (tmp_path / "j.csv").exists()


def test_an_exploration_without_its_data_is_one_line(tmp_path):
    """A missing dataset folder is said in one line, as by every other command."""
    proc = subprocess.run([sys.executable, "-m", "common", "explore", "02_vit_scratch_10classes",
                           "24px-patch6", "--profile", "smoke", "--data-dir",
                           str(tmp_path / "nowhere"), "--journal", str(tmp_path / "j.csv")],
                          capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[-1].startswith("error: ")
    assert "Traceback" not in proc.stderr and str(tmp_path / "nowhere") in lines[-1]
    assert not (tmp_path / "j.csv").exists()


def test_time_to_accuracy_reads_the_test_set_once_after_training(tmp_path):
    """benchmarks/time_to_accuracy.py chooses nothing on test: its curve and its time to the
    target are on validation; the test images are loaded and scored once, after training,
    for the kept checkpoint; it states what differs from the 2022 figure."""
    import json

    root = tmp_path / "synth"
    synth.synth(root, classes=12, per_class=8, test_per_class=2, size=32)
    probe = (
        "import sys, json; sys.path.insert(0, 'benchmarks'); events = []\n"
        "from common.data import images; from common.inference import probabilities\n"
        "from common.training import vit_runs\n"
        "real_load, real_probs, real_train = (images.load_images,\n"
        "    probabilities.keras_probabilities, vit_runs.train_config)\n"
        "def load(table, *a, **k):\n"
        "    events.append(('load', sorted(table['path'].astype(str))))\n"
        "    return real_load(table, *a, **k)\n"
        "def probs(*a, **k):\n"
        "    events.append(('score', len(a[1]))); return real_probs(*a, **k)\n"
        "def train(*a, **k):\n"
        "    out = real_train(*a, **k); events.append(('trained', 0)); return out\n"
        "images.load_images, probabilities.keras_probabilities = load, probs\n"
        "vit_runs.train_config = train\n"
        "import time_to_accuracy\n"
        "code = time_to_accuracy.main(sys.argv[1:])\n"
        f"open({str(tmp_path / 'events.json')!r}, 'w').write(json.dumps(events))\n"
        "sys.exit(code)\n")
    proc = subprocess.run(
        [sys.executable, "-c", probe, "--profile", "smoke", "--run", "24px-patch6",
         "--data", str(root), "--target", "0.01", "--json", str(tmp_path / "t.json")],
        cwd=paths.ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "KERAS_BACKEND": "torch"})  # smoke 02's backend, before the spies
    assert proc.returncode == 0, proc.stderr[-3000:]
    from conftest import task_of

    test = sorted(task_of(root, class_ids=[2, 3, 5, 7, 11], val_fraction=0.2,
                          seed=0).parts.test["path"].astype(str))
    events = [tuple(e) for e in json.loads((tmp_path / "events.json").read_text())]
    trained = events.index(("trained", 0))
    loads_of_test = [i for i, (kind, what) in enumerate(events)
                     if kind == "load" and set(what) & set(test)]
    assert loads_of_test == [trained + 1]  # once, after training, the whole test set
    assert events[trained + 1][1] == test
    assert [e for e in events if e[0] == "score"] == [("score", len(test))]
    result = json.loads((tmp_path / "t.json").read_text())
    assert result["target_on"] == "validation" and "test_accuracy" not in result["points"][0]
    assert result["kept"]["test_images"] == len(test)
    assert "time to 1.0% validation top-1" in proc.stdout
    assert "against 2022's 24.5 % (72 px, patch 8): architecture: the same pure ViT; input: " \
           "24 px" in proc.stdout


def test_a_run_with_test_time_flip_is_scored_on_validation_as_its_test_will_be(monkeypatch):
    import numpy as np

    from common import explore
    from common.training import vit_runs
    from conftest import small_vit

    x = np.zeros((4, 8, 8, 3), "uint8")
    x[:, :, :4] = 255  # the left half bright; the mirror image has it on the right
    y = np.ones(4, dtype=int)

    class LeftRight:  # class 0 for a bright left half, class 1, more surely, for a bright right
        def predict(self, view, batch_size, verbose):
            left = view[:, :, :4].mean(axis=(1, 2, 3)) > view[:, :, 4:].mean(axis=(1, 2, 3))
            return np.where(left[:, None], [[1.0, 0.0]], [[0.0, 3.0]])

    monkeypatch.setattr(vit_runs, "load_arrays",
                        lambda cfg, parts, seed: vit_runs.Arrays(x, y, x, y))
    cfg = small_vit(test_time_flip=True)
    # plain, every image reads as class 0 (0 %); with its mirror, as class 1 (100 %)
    assert explore._flipped_val_accuracy(LeftRight(), cfg, None, seed=0) == 1.0
