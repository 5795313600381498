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
        # the device each framework trained on, read from the framework (a CPU here): torch
        # for every notebook of the gpu profile (Keras on torch, one CUDA)
        framework = "torch"
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
    """benchmarks/gpu_check.sh --cpu: the GPU check, every amount shrunk, writes its JSON;
    each job runs in its own process, and one that fails (planted here) is recorded with its
    error while the next ones still run."""
    from conftest import smoke_environment

    data = synth.synth(tmp_path / "synth-196", classes=196, per_class=3, test_per_class=1,
                       size=32)
    (tmp_path / "plant").mkdir()
    (tmp_path / "plant" / "sitecustomize.py").write_text(
        'import sys\nif sys.argv[-2:] == ["--job", "efficientnetb0"]:\n'
        '    raise SystemExit("planted failure")\n')
    env = {**smoke_environment(tmp_path), "PYTHON": sys.executable,
           "VIT_CARS_WEIGHTS": str(tmp_path / "weights"), "TMPDIR": str(tmp_path),
           "KERAS_BACKEND": "tensorflow", "HF_HUB_OFFLINE": "0"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "plant"), env["PYTHONPATH"]])
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu", "--data", str(data),
                           "--out", str(out)], cwd=paths.ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "written " in proc.stdout and "failed: efficientnetb0" in proc.stdout
    report = json.loads(out.read_text())
    assert report["failed"] == {"efficientnetb0": "exit 1: SystemExit: planted failure"}
    assert "efficientnetb0" not in report
    assert report["cpu_mode"] is True and report["keras_backend"] == "torch"
    vit = report["vit_b16_finetune"]
    assert vit["images_per_second"] > 0 and vit["target"] == 2500
    assert vit["timed_steps"] == 3 and vit["warmup_steps"] == 2  # 100 after 30 on a GPU
    assert vit["batch_size"] == 8  # --cpu; the profile's 32 on a GPU
    assert "ViT-B/16 fine-tuning:" in proc.stdout and "target 2,500: NOT met" in proc.stdout
    # the jobs after the failed one ran
    names = {(r["notebook"], r["run"]) for r in report["keras_vit"]}
    assert len(names) == len(loading.load("01_vit_scratch", "gpu").runs) + len(
        loading.load("02_vit_scratch_10classes", "gpu").runs)
    assert report["notebooks"]["04_balanced"]["weights"] == "stand-in"
    assert report["skipped"] == []
    assert all(r["trained_on"] == {"torch": "cpu"} for r in report["keras_vit"])


def test_the_gpu_profiles_compiled_vit_trains_on_torch(tmp_path):
    """jit_compile: true on torch (the gpu profile's 01 and 02, which the dry run does not
    compile): torch.compile with static shapes trains the hybrid ViT, augmented by kornia in
    the input pipeline; with dynamic shapes inductor fails on the stem's convolution
    backward. A tiny network, one epoch (minutes of compiling on a CPU)."""
    code = textwrap.dedent('''
        import numpy as np
        from common.config import schema
        from common.models import vit
        from common.training import keras_fit
        cfg = schema.KerasVitRun(name="t", network=dict(
            image_size=24, patch_size=4, stem_channels=[8, 16], projection_dim=16, num_heads=2,
            transformer_layers=1, mlp_head_units=[32]), jit_compile=True, batch_size=8, epochs=1)
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 255, (20, 24, 24, 3)).astype("uint8"), rng.integers(0, 3, 20)
        model = vit.build_vit(cfg.network, cfg.augmentation, 3)
        keras_fit.compile_classifier(model, keras_fit.make_optimizer(cfg.optimiser, 1, 3),
                                     jit_compile=True)
        out = keras_fit.train(model, x, y, x[:8], y[:8], epochs=1, batch_size=8, verbose=0,
                              checkpoint_path="%s", augmentation=cfg.augmentation.level)
        print("compiled", model.jit_compile, np.isfinite(out["history"]["loss"]).all())
    ''' % (tmp_path / "m.keras"))
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(paths.ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-3:] == ["compiled", "True", "True"]
