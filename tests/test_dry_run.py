"""The gpu profile's dry run (every gpu code path, tiny amounts, stand-in weights) and Keras
on torch in a kernel without TensorFlow. Minutes on 2 cores: `make test-dry-run`, the
second step of CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from common.config import loading
from common.config.study import NOTEBOOKS
from common.core import paths
from common.data import synth

pytestmark = pytest.mark.dryrun

NO_TENSORFLOW = textwrap.dedent('''
    """Loaded at start-up: this interpreter behaves as if TensorFlow were not installed."""
    import importlib.abc
    import importlib.machinery
    import sys


    class NoTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                return importlib.machinery.ModuleSpec(name, self)
            return None

        def create_module(self, spec):
            raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)

        def exec_module(self, module):
            raise ModuleNotFoundError(f"No module named {module.__name__!r}")


    sys.meta_path.insert(0, NoTensorFlow())
''')


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    from conftest import smoke_environment

    base = tmp_path_factory.mktemp("dry")
    data = synth.synth(base / "synth-196", classes=196, per_class=3, test_per_class=1, size=48)
    env = {**smoke_environment(base), "VIT_CARS_WEIGHTS": str(base / "weights")}
    env.pop("VIT_CARS_OUTPUT")
    proc = subprocess.run(["make", "report", "PROFILE=gpu", "DRY_RUN=1", f"VENV={sys.prefix}",
                           f"OUTPUT={base / 'out'}", f"DATA_DIR={data}"], cwd=paths.ROOT,
                          env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return base


def test_the_dry_run_runs_every_gpu_notebook_with_the_gpu_settings(dry_run):
    out = dry_run / "out"
    assert not (out / "results" / "gpu").exists()  # never mixed with real gpu results
    tests = {}
    for name in NOTEBOOKS:
        payload = json.loads((out / "results" / "gpu-dry" / f"{name}.json").read_text())
        assert payload["profile"] == "gpu" and payload["dry_run"] is True
        sizes = payload["dataset"]["split_sizes"]
        assert sizes["train"] <= 8 and sizes["val"] <= 16 and sizes["test"] <= 16
        tests[name] = payload["dataset"]["test_set"]
        gpu = loading.load(name, "gpu")
        for run, full in zip(payload["runs"], [r.model_dump() for r in getattr(gpu, "runs", [])]):
            # the same models and resolutions as the gpu profile; only the amounts shrink
            for key in ("image_size", "patch_size", "stem_channels", "transformer_layers",
                        "augment_in_model", "balance", "cap_per_class", "attention",
                        "mixed_precision"):
                if key in full:
                    assert run["params"][key] == full[key], (name, key)
            assert len(run["history"]["loss"]) == 1
            assert run["params"].get("batch_size", 4) <= 4
        if name in ("03_vit_finetune", "04_vit_finetune_10classes", "05_efficientnet"):
            for run in payload["runs"]:
                assert run["weights"]["source"] == "stand-in", run["weights"]
                assert run["weights"]["reason"].startswith("dry run:")
        if name == "03_vit_finetune":
            assert payload["runs"][0]["params"]["model_parameters"] > 80_000_000  # ViT-Base
        # the device each framework trained on, read from the framework (a CPU here)
        framework = "torch" if name[:2] in ("03", "04") else "tensorflow"
        assert payload["environment"]["trained_on"] == {framework: "cpu"}, name
        assert all(run["trained_on"] == {framework: "cpu"} for run in payload["runs"])
    # one test set per task, in a dry run too
    assert tests["01_vit_scratch"] == tests["03_vit_finetune"] == tests["05_efficientnet"]
    assert tests["02_vit_scratch_10classes"] == tests["04_vit_finetune_10classes"]
    assert (dry_run / "weights" / "stand-ins" / "google--vit-base-patch16-224-in21k"
            / "model.safetensors").is_file()
    html = (out / "report" / "_output" / "gpu-dry" / "rapport.html").read_text()
    assert "Exécution à blanc" in html
    assert html.index("Exécution à blanc") < html.index('id="introduction"')


def test_keras_on_torch_needs_no_tensorflow(tmp_path):
    """01, 02 (which starts from 01's network) and 05 on the torch backend, in kernels where
    `import tensorflow` fails as on a box without it."""
    import jupytext

    from conftest import smoke_environment

    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text(NO_TENSORFLOW)
    data = synth.synth(tmp_path / "synth", classes=12, per_class=8, test_per_class=2, size=32)
    env = smoke_environment(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "block"), env["PYTHONPATH"]])
    check = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env,
                           capture_output=True, text=True)
    assert check.returncode != 0 and "No module named 'tensorflow'" in check.stderr
    for name in ("01_vit_scratch", "02_vit_scratch_10classes", "05_efficientnet"):
        source = tmp_path / f"{name}.ipynb"
        jupytext.write(jupytext.read(paths.ROOT / "notebooks" / f"{name}.py"), source,
                       fmt="ipynb")
        proc = subprocess.run(
            [sys.executable, "-m", "papermill", str(source), str(tmp_path / f"{name}.out.ipynb"),
             "--cwd", str(paths.ROOT), "-p", "profile", "smoke", "-p", "data_dir", str(data),
             "-y", "overrides: {keras_backend: torch}", "--no-progress-bar"], env=env,
            capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (name, proc.stderr[-3000:])
        payload = json.loads((tmp_path / "out" / "results" / "smoke" / f"{name}.json")
                             .read_text())
        assert payload["environment"]["keras_backend"] == "torch"


def test_fine_tuning_in_two_processes(tmp_path, monkeypatch):
    """04 (smoke) with `processes: 2`: two CPU processes fine-tune together over gloo, and the
    results and the saved model are those of the main process."""
    import numpy as np

    from common.data import splits
    from common.data import table as data
    from common.inference.predictor import Predictor
    from common.pipeline import notebooks
    from conftest import smoke_environment

    root = synth.synth(tmp_path / "synth", classes=12, per_class=16, test_per_class=4, size=48)
    for key, value in smoke_environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    notebooks.execute(paths.ROOT / "notebooks" / "04_vit_finetune_10classes.py", "smoke",
                      {"data_dir": str(root), "processes": 2}, progress=False)
    payload = json.loads((tmp_path / "out" / "results" / "smoke"
                          / "04_vit_finetune_10classes.json").read_text())
    run = payload["runs"][0]
    assert run["params"]["world_size"] == 2
    # the global batch of the parameters, each process taking half of it
    assert run["params"]["global_batch_size"] == run["params"]["batch_size"]
    assert run["params"]["per_process_batch_size"] == run["params"]["batch_size"] // 2
    assert run["trained_on"] == {"torch": "cpu"}
    assert payload["params"]["processes"] == 2
    # the saved model gives back the recorded test accuracy on the same test images
    table = splits.select_classes(data.load_table(root), class_ids=[2, 3, 5, 7, 11])
    test = table[table["split"] == "test"]
    rows = Predictor(tmp_path / "out" / run["model_dir"]).predict_files(
        list(test["path"]), top=1)
    accuracy = np.mean([r["class_id"] == c for r, c in zip(rows, test["class_id"])])
    assert accuracy == pytest.approx(run["metrics"]["test_accuracy"])


def test_gpu_check_runs_on_cpu(tmp_path):
    """benchmarks/gpu_check.sh --cpu: the GPU check, every amount shrunk, writes its JSON."""
    from conftest import smoke_environment

    data = synth.synth(tmp_path / "synth-196", classes=196, per_class=3, test_per_class=1,
                       size=32)
    env = {**smoke_environment(tmp_path), "PYTHON": sys.executable,
           "VIT_CARS_WEIGHTS": str(tmp_path / "weights"), "TMPDIR": str(tmp_path)}
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu", "--data", str(data),
                           "--out", str(out)], cwd=paths.ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["cpu_mode"] is True and report["keras_backend"] == "torch"
    assert report["vit_b16_finetune"]["images_per_second"] > 0
    names = {(r["notebook"], r["run"]) for r in report["keras_vit"]}
    assert len(names) == len(loading.load("01_vit_scratch", "gpu").runs) + len(
        loading.load("02_vit_scratch_10classes", "gpu").runs)
    assert report["efficientnetb0"]["images_per_second"] > 0
    assert report["notebooks"]["04_balanced"]["weights"] == "stand-in"
    # no TensorFlow that sees a GPU here: the check says which figures are not the profile's
    assert any("TensorFlow" in line for line in report["not_measured"])
    assert report["skipped"] == []
    assert report["vit_b16_finetune"]["batch_size"] == 8  # --cpu; the profile's 32 on a GPU
    assert len(report["vit_b16_finetune"]["epoch_seconds"]) == 3
    assert report["efficientnetb0"]["trained_on"] == {"torch": "cpu"}
