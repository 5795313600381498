"""A catalogue of bad inputs: each one gets a clear answer (one line naming the culprit and
what to do, a non-zero exit) or is refused, never a wrong result or a raw traceback.

Sections: datasets, generated data, results and the report, saved models and `predict`,
runs and their parameters.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.__main__ import main as cli
from common.core import atomic, paths
from common.data import synth
from common.data import table as data
from common.models import folder as model_folder
from common.models.origin import weights_info
from common.results import contract as results
from conftest import doctored_results, small_vit, vit_model

CLI_ENV = {**os.environ, "PYTHONPATH": str(paths.ROOT / "src"), "PYTHONDONTWRITEBYTECODE": "1"}


def _cli(*args, env=None):
    """Run ``python -m <args>``; return (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, timeout=300,
                          env=env or CLI_ENV)
    return (proc.returncode, proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"))


def _one_line_error(err: str, *words):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    for w in words:
        assert w in lines[-1], (w, lines[-1])


# ============================================================================ datasets

def test_devkit_without_cars_meta_names_the_missing_file(synth_root, tmp_path):
    root = tmp_path / "cars"
    shutil.copytree(synth_root, root)
    (root / "devkit" / "cars_meta.mat").unlink()
    with pytest.raises(data.DataError, match=r"devkit/cars_meta.mat is missing"):
        data.load_table(root)
    code, _, err = _cli("common", "data", "summary", str(root))
    assert code == 2
    _one_line_error(err, "cars_meta.mat is missing")


def test_unfinished_generated_folder_is_not_read_as_one_class(tmp_path):
    root = tmp_path / "cars"
    (root / "cars_train").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(root / "cars_train" / "00001.jpg")
    (root / data.SYNTHETIC_MARKER).write_text("{}")
    with pytest.raises(data.DataError, match="devkit layout but .*missing"):
        data.load_table(root)


def test_split_folders_beside_a_stray_folder_are_refused(tmp_path):
    for split in ("train", "test"):
        for cls in ("Car A", "Car B"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (16, 16)).save(tmp_path / split / cls / "1.jpg")
    (tmp_path / "stray").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "stray" / "1.jpg")
    with pytest.raises(data.DataError, match="other folders beside them \\(stray\\)"):
        data.load_table(tmp_path)


def test_folder_layout_needs_two_classes(tmp_path):
    (tmp_path / "Only car").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "Only car" / "1.jpg")
    with pytest.raises(data.DataError, match="at least two class folders.*found 1 \\(Only car\\)"):
        data.load_table(tmp_path)


@pytest.mark.parametrize("name", ["devkit/cars_meta.mat", "devkit/cars_train_annos.mat"])
def test_corrupt_mat_file_is_one_line(synth_root, tmp_path, name):
    root = tmp_path / "cars"
    shutil.copytree(synth_root, root)
    (root / name).write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    code, _, err = _cli("common", "data", "summary", str(root))
    assert code == 2
    _one_line_error(err, f"cannot read {root / name}", "corrupt")


def test_non_utf8_path_is_one_line(synth_root, tmp_path):
    bad = os.fsencode(str(tmp_path)) + b"/caf\xe9"
    shutil.copytree(synth_root, os.fsdecode(bad))
    proc = subprocess.run([sys.executable, "-m", "common", "data", "summary", bad],
                          capture_output=True, timeout=120, env=CLI_ENV)
    assert proc.returncode == 2
    _one_line_error(proc.stderr.decode(errors="replace"), "is not a valid UTF-8 path",
                    "caf\\xe9")


def test_summary_counts_a_truncated_jpeg_as_corrupt(synth_root, tmp_path):
    root = tmp_path / "cars"
    shutil.copytree(synth_root, root)
    victim = sorted((root / "cars_train").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    assert data.summary(root)["corrupt_images"] == 1


def test_images_decode_upright_from_exif(tmp_path):
    from common.data import images

    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = 255  # white left half, as stored
    im = Image.fromarray(array)
    exif = im.getexif()
    exif[0x0112] = 6  # the camera was turned: show it rotated 90 degrees clockwise
    im.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = images.decode(str(tmp_path / "phone.jpg"), 20)
    upright = np.asarray(Image.fromarray(array).transpose(Image.Transpose.ROTATE_270)
                         .resize((20, 20)))
    assert out[:10].mean() > 200 and out[10:].mean() < 50  # white on top once upright
    assert np.abs(out.astype(int) - upright.astype(int)).mean() < 20


# ============================================================================ generated data

def test_synth_refuses_an_existing_dataset(synth_root, tmp_path):
    root = tmp_path / "cars"
    shutil.copytree(synth_root, root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    code, _, err = _cli("common", "synth", str(root), "--classes", "3", "--per-class", "2")
    assert code == 2
    _one_line_error(err, "is not empty", "never overwrites")
    assert before == {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_synth_size_zero_leaves_nothing(tmp_path):
    code, _, err = _cli("common", "synth", str(tmp_path / "new"), "--classes", "3",
                        "--per-class", "2", "--size", "0")
    assert code == 2
    _one_line_error(err, "--size must be at least 8")
    assert list(tmp_path.iterdir()) == []


def test_synth_onto_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    code, _, err = _cli("common", "synth", str(tmp_path / "file"), "--classes", "3",
                        "--per-class", "2")
    assert code == 2
    _one_line_error(err, "is a file, not a folder")


def test_interrupted_synth_leaves_nothing_that_loads(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "write_devkit_mats", boom)
    with pytest.raises(KeyboardInterrupt):
        synth.synth(tmp_path / "cars", classes=3, per_class=2)
    assert list(tmp_path.iterdir()) == []


# ============================================================================ results, report

def _valid_payload(smoke_run) -> dict:
    return json.loads(json.dumps(smoke_run["results"]["04_vit_finetune_10classes"]))


@pytest.mark.slow
@pytest.mark.parametrize("value,shown", [(math.nan, "nan"), (math.inf, "inf"), (42.0, "42.0")])
def test_report_refuses_a_metric_that_is_not_a_fraction(smoke_run, tmp_path, monkeypatch,
                                                        value, shown):
    payload = _valid_payload(smoke_run)
    payload["runs"][0]["metrics"]["test_accuracy"] = value
    folder = tmp_path / "results" / "smoke"
    folder.mkdir(parents=True)
    (folder / "04_vit_finetune_10classes.json").write_text(json.dumps(payload))
    monkeypatch.setenv("VIT_CARS_OUTPUT", str(tmp_path))
    with pytest.raises(results.ResultsError) as err:
        results.collect("smoke")
    message = str(err.value)
    assert "04_vit_finetune_10classes.json" in message and "test_accuracy" in message
    assert shown in message and "make run PROFILE=smoke FORCE=1" in message


@pytest.mark.parametrize("text", ["", '{"notebook": "04_vit_finetune_10classes", "runs": ['])
def test_empty_or_truncated_results_file_is_named(tmp_path, monkeypatch, text):
    folder = tmp_path / "results" / "smoke"
    folder.mkdir(parents=True)
    (folder / "05_efficientnet.json").write_text(text)
    monkeypatch.setenv("VIT_CARS_OUTPUT", str(tmp_path))
    with pytest.raises(results.ResultsError, match="05_efficientnet.json is not valid JSON"):
        results.read("smoke", "05_efficientnet")


def test_report_stops_on_a_bad_results_file_in_one_line_before_any_kernel(tmp_path):
    out = tmp_path / "out"
    doctored_results(out, "smoke")
    target = out / "results" / "smoke" / "03_vit_finetune.json"
    payload = json.loads(target.read_text())
    payload["runs"][0]["metrics"]["test_accuracy"] = math.nan
    target.write_text(json.dumps(payload))
    env = {**CLI_ENV, "VIT_CARS_OUTPUT": str(out)}
    code, _, err = _cli("common", "report", "--profile", "smoke", env=env)
    assert code == 1
    _one_line_error(err, "03_vit_finetune.json", "test_accuracy", "nan",
                    "make run PROFILE=smoke FORCE=1")
    assert len(err.strip().splitlines()) == 1
    assert not (out / "runs").exists()  # no kernel started, no executed report
    assert not (out / "report" / "_output" / "smoke" / "rapport.html").exists()


@pytest.mark.parametrize("change,words", [
    (lambda csv: csv.replace(b"\n", b"\n", 1) + b"x", ["predictions file", "SHA-256"]),
    (None, ["predictions of run chosen", "accuracy of"]),
])
def test_predictions_that_disagree_with_the_results_are_named(tmp_path, monkeypatch, change,
                                                              words):
    out = tmp_path / "out"
    doctored_results(out, "smoke")
    monkeypatch.setenv("VIT_CARS_OUTPUT", str(out))
    folder = out / "results" / "smoke"
    csv = folder / "01_vit_scratch.predictions.csv"
    if change:
        csv.write_bytes(change(csv.read_bytes()))
    else:  # a right answer turned wrong, the file's hash recorded again
        lines = csv.read_text().splitlines()
        run, image, label, predicted, top5 = lines[1].split(",")
        lines[1] = ",".join([run, image, label, str(int(label) + 1), top5])
        csv.write_text("\n".join(lines) + "\n")
        path = folder / "01_vit_scratch.json"
        payload = json.loads(path.read_text())
        payload["predictions"]["sha256"] = hashlib.sha256(csv.read_bytes()).hexdigest()
        path.write_text(json.dumps(payload))
    with pytest.raises(results.ResultsError) as err:
        results.read("smoke", "01_vit_scratch")
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.slow
def test_results_paths_are_relative_so_a_copied_folder_shows_its_own_figures(smoke_run,
                                                                             tmp_path,
                                                                             monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(smoke_run["out"], copy)
    monkeypatch.setenv("VIT_CARS_OUTPUT", str(copy))
    payload = results.read("smoke", "01_vit_scratch")
    assert all(results.resolve(f).is_relative_to(copy) for f in payload.figures)
    absolute = {**payload.model_dump(mode="json"),
                "figures": [str(smoke_run["out"] / f) for f in payload.figures]}
    assert any(p.startswith("figures[0]: must be relative to the output folder")
               for p in results.problems(absolute))


def test_a_diverging_run_says_so():
    probs = np.full((3, 2), np.nan)
    with pytest.raises(ValueError, match="run 'x'.*diverged; lower learning_rate"):
        results.run_record("x", {}, weights_info("random-init", pretrained=False),
                           [0, 1, 0], probs, {}, "m", images=["a", "b", "c"])


def test_atomic_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "a.txt", "x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


# ============================================================================ models, predict

@pytest.fixture(scope="module")
def keras_model_dir(tmp_path_factory):
    """A tiny ViT model folder, as the notebooks write it."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

    folder = tmp_path_factory.mktemp("keras-model")
    model = vit_model(small_vit(projection_dim=8, num_heads=1, transformer_layers=1,
                                    mlp_head_units=[8]), 3)
    model.save(folder / model_folder.KERAS_FILE)
    model_folder.write_info(folder, {0: (1, "A"), 1: (2, "B"), 2: (3, "C")},
                            {"framework": "keras", "image_size": 16, "crop_mode": "squash"})
    return folder


@pytest.fixture(scope="module")
def hf_model_dir(tmp_path_factory):
    """A tiny Hugging Face model folder (safetensors), as the notebooks write it."""
    from transformers import ViTConfig, ViTForImageClassification

    from common.models import hf_classifier as hf_weights

    folder = tmp_path_factory.mktemp("hf-model")
    config = ViTConfig(image_size=16, patch_size=8, hidden_size=8, num_hidden_layers=1,
                       num_attention_heads=1, intermediate_size=8, num_labels=2)
    ViTForImageClassification(config).save_pretrained(folder)
    hf_weights.simple_processor(16).save_pretrained(folder)
    model_folder.write_info(folder, {0: (1, "A"), 1: (2, "B")},
                            {"framework": "transformers", "image_size": 16,
                             "crop_mode": "squash"})
    return folder


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "car.jpg"
    Image.new("RGB", (30, 20), (200, 10, 10)).save(path)
    return str(path)


def _copy(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(folder, out)
    return out


def _predict_error(capsys, *args) -> str:
    code = cli(["predict", *(str(a) for a in args)])
    err = capsys.readouterr().err
    assert code == 2, err
    _one_line_error(err)
    return err


@pytest.mark.parametrize("content,words", [
    ('{"0": {"class_id": 1, "class_name": "A"}, "1": {"class_', "not valid JSON"),
    ('[{"class_id": 1, "class_name": "A"}]', "does not map output indices"),
    ('{"0": {"class_id": 1, "class_name": "A"}}', "names 1 classes but the model has 3"),
])
def test_bad_labels_json(keras_model_dir, tmp_path, capsys, image, content, words):
    folder = _copy(keras_model_dir, tmp_path)
    (folder / "labels.json").write_text(content)
    err = _predict_error(capsys, folder, image)
    assert "labels.json" in err and words in err


@pytest.mark.parametrize("change,words", [
    (lambda p: p.pop("image_size"), "lacks 'image_size'"),
    (lambda p: p.update(image_size="16"), "'image_size' must be a int"),
    (lambda p: p.update(image_size=32), "says image_size 32 but the model expects 16 px"),
])
def test_bad_preprocess_json(keras_model_dir, tmp_path, capsys, image, change, words):
    folder = _copy(keras_model_dir, tmp_path)
    pre = json.loads((folder / "preprocess.json").read_text())
    change(pre)
    (folder / "preprocess.json").write_text(json.dumps(pre))
    assert words in _predict_error(capsys, folder, image)


def test_corrupt_model_keras(keras_model_dir, tmp_path, capsys, image):
    folder = _copy(keras_model_dir, tmp_path)
    (folder / "model.keras").write_bytes(b"PK\x03\x04 not a model")
    err = _predict_error(capsys, folder, image)
    assert "model.keras is corrupt or unreadable" in err and "File not found" not in err


def test_truncated_safetensors(hf_model_dir, tmp_path, capsys, image):
    folder = _copy(hf_model_dir, tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    err = _predict_error(capsys, folder, image)
    assert "truncated or corrupt" in err and str(folder) in err


@pytest.mark.parametrize("top", ["0", "-3", "two"])
def test_top_must_be_positive(keras_model_dir, capsys, image, top):
    with pytest.raises(SystemExit) as exit_:
        cli(["predict", str(keras_model_dir), image, "--top", top])
    assert exit_.value.code == 2
    assert "--top: must be a positive integer" in capsys.readouterr().err


def test_csv_on_a_folder_or_under_a_file(keras_model_dir, tmp_path, capsys, image):
    assert "is a folder" in _predict_error(capsys, keras_model_dir, image, "--csv", tmp_path)
    (tmp_path / "f").write_text("x")
    assert "is a file, not a folder" in _predict_error(capsys, keras_model_dir, image, "--csv",
                                                       tmp_path / "f" / "out.csv")


def test_missing_image_and_decompression_bomb_are_named(keras_model_dir, tmp_path, capsys,
                                                         image, monkeypatch):
    bomb = tmp_path / "bomb.png"
    Image.new("RGB", (200, 200)).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40,000 pixels is then a bomb
    code = cli(["predict", str(keras_model_dir), image, str(tmp_path / "absent.jpg"), str(bomb)])
    captured = capsys.readouterr()
    assert code == 1  # the readable image was still predicted
    assert captured.out.count("| top:") == 1
    assert "absent.jpg: error: file not found" in captured.err
    assert "bomb.png: error: image too large: over Pillow's limit" in captured.err


# ============================================================================ runs, parameters

@pytest.mark.parametrize("params,words", [
    (["-p", "epochs", "1"], ["'epochs'", "accepted keys"]),
    (["-p", "runs", "[{name: x, network: {image_size: 32, patch_size: 4}, epochs: ten}]"],
     ["run 'x'", "epochs", "integer ≥ 1"]),
    (["-p", "runs.*.optimiser.learning_rate", "-0.001"], ["learning_rate", "> 0"]),
    (["-p", "runs", "[{name: x, network: {image_size: 32, patch_size: 5}}]"],
     ["run 'x'", "patch_size 5 does not divide image_size 32"]),
])
def test_a_bad_parameter_stops_before_any_kernel(tmp_path, params, words):
    env = {**CLI_ENV, "VIT_CARS_OUTPUT": str(tmp_path)}
    code, _, err = _cli("common", "run", "notebooks/01_vit_scratch.py",
                        "--profile", "smoke", *params, env=env)
    assert code == 2
    _one_line_error(err, "params/smoke/01_vit_scratch.yaml", *words)
    assert not (tmp_path / "runs").exists() and not (tmp_path / ".staging").exists()


def test_unknown_profile_lists_the_valid_ones():
    proc = subprocess.run(["make", "run", "PROFILE=foo"], cwd=paths.ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert "unknown PROFILE 'foo': use smoke, cpu or gpu" in proc.stderr


def _checksums(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_failing_run_leaves_every_earlier_output_as_it_was(smoke_run, tmp_path, monkeypatch):
    from common.pipeline import notebooks

    out = tmp_path / "out"
    shutil.copytree(smoke_run["out"], out)
    # 02's second run starts from a network of 01 that is not there: it fails inside the
    # kernel, after the first run trained
    shutil.rmtree(out / "models" / "smoke" / "01_vit_scratch" / "improved-hybrid")
    before = _checksums(out)
    for key, value in smoke_run["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("VIT_CARS_OUTPUT", str(out))
    runs = [{"name": "24px-patch8", "network": {"image_size": 24, "patch_size": 8}},
            {"name": "breaks", "init_from": "improved-hybrid",
             "network": {"image_size": 24, "patch_size": 4, "stem_channels": [8, 16]}}]
    with pytest.raises(Exception) as err:
        notebooks.execute(paths.ROOT / "notebooks" / "02_vit_scratch_10classes.py", "smoke",
                          {"data_dir": str(smoke_run["data"]), "runs": runs}, progress=False)
    assert "run the notebook that trains it first" in str(err.value)
    after = _checksums(out)
    failed = "runs/smoke/02_vit_scratch_10classes.failed.ipynb"
    assert failed in after  # the failed run's executed copy, for inspection
    del after[failed]
    assert after == before
    assert not (out / notebooks.STAGING).exists() or not any((out / notebooks.STAGING).iterdir())


@pytest.mark.slow
def test_sigterm_stops_the_kernel_and_commits_nothing(smoke_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(smoke_run["out"], out)
    before = _checksums(out)
    env = {**smoke_run["env"], "VIT_CARS_OUTPUT": str(out)}
    proc = subprocess.Popen([sys.executable, "-m", "common", "run",
                             "notebooks/02_vit_scratch_10classes.py", "--profile", "smoke",
                             "-p", "data_dir", str(smoke_run["data"])], cwd=paths.ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stage = out / ".staging" / "smoke-02_vit_scratch_10classes"
    deadline = time.time() + 120
    while not (stage / "models").exists() and time.time() < deadline:  # training has begun
        time.sleep(0.5)
    assert (stage / "models").exists(), "the run never started training"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted; earlier outputs left as they were" in err
    assert not stage.exists()
    after = _checksums(out)
    after.pop("runs/smoke/02_vit_scratch_10classes.failed.ipynb", None)
    assert after == before


KILLED = """# %% tags=["parameters"]
profile = "smoke"
data_dir = None
overrides = {}

# %%
x = 1

# %%
import os, signal
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_a_killed_kernel_is_one_line_naming_the_cell(tmp_path):
    """A kernel killed by the system (kill -9, the out-of-memory killer) while it runs a
    notebook: one line with the notebook, the cell, the likely cause and the executed copy;
    the earlier outputs stay as they were."""
    out = tmp_path / "out"
    doctored_results(out, "smoke")
    before = _checksums(out)
    notebook = tmp_path / "notebooks" / "01_vit_scratch.py"
    notebook.parent.mkdir()
    notebook.write_text(KILLED)
    env = {**CLI_ENV, "VIT_CARS_OUTPUT": str(out)}
    code, _, err = _cli("common", "run", str(notebook), "--profile",
                        "smoke", "-p", "data_dir", str(tmp_path / "absent"), env=env)
    assert code == 1
    failed = out / "runs" / "smoke" / "01_vit_scratch.failed.ipynb"
    _one_line_error(err, "01_vit_scratch.py", "kernel died in cell 4",
                    "(import os, signal)", "lack of memory",
                    "earlier outputs left as they were", str(failed))
    assert "DeadKernelError" not in err and "Kernel died while" not in err
    assert "[IPKernelApp] WARNING" not in err
    assert failed.is_file()
    after = _checksums(out)
    after.pop("runs/smoke/01_vit_scratch.failed.ipynb")
    assert after == before
