"""Shared fixtures: generated datasets, the shared real dataset, and one smoke run of the
five notebooks for the whole test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from common.config.study import NOTEBOOKS
from common.core import atomic, paths
from common.data import synth

HUB_ID = "google/vit-base-patch16-224-in21k"


def small_vit(image_size: int = 16, patch_size: int = 8, **changes):
    """The settings of a small ViT run (a ``KerasVitRun``: the schema's defaults, a narrow
    and shallow network), with ``changes``: a run key, or a key of one of its groups given
    by its own name (``learning_rate=3e-3``, ``stem_channels=[8]``, ``augmentation="strong"``
    for the level, ``augment_in_model=True``)."""
    from common.config.schema import KerasVitRun

    aliases = {"augmentation": ("augmentation", "level"),
               "augment_in_model": ("augmentation", "in_model")}
    groups = {key: (group, key) for group in ("network", "optimiser", "augmentation")
              for key in KerasVitRun.model_fields[group].annotation.model_fields}
    values = {"name": "small", "network": {
        "image_size": image_size, "patch_size": patch_size, "projection_dim": 16,
        "num_heads": 2, "transformer_layers": 2, "mlp_head_units": [32]}}
    for key, value in changes.items():
        where = aliases.get(key) or groups.get(key)
        if where is None or key in KerasVitRun.model_fields and key not in aliases:
            values[key] = value
        else:
            values.setdefault(where[0], {})[where[1]] = value
    return KerasVitRun.model_validate(values)


def vit_model(cfg, num_classes: int, stats=None):
    """The package's ViT for run settings ``cfg`` (its network and augmentation groups)."""
    from common.models.vit import build_vit

    return build_vit(cfg.network, cfg.augmentation, num_classes, stats, name=cfg.name)


def optimiser_of(cfg) -> tuple:
    """``make_optimizer``'s first two arguments for run settings ``cfg``."""
    return cfg.optimiser, cfg.epochs


def task_of(root, class_ids=None, val_fraction=0.25, test_fraction=0.2, seed=0):
    """The study's data entry point on ``root``: all classes, or ``class_ids`` as the
    10-class task does."""
    from common.config.schema import Study
    from common.data.task import load_task

    study = Study(data_dir=str(root), split_seed=seed, val_fraction=val_fraction,
                  test_fraction=test_fraction, **({"ten_classes": class_ids} if class_ids else {}))
    return load_task(study, "ten" if class_ids else "all")


# a tiny ViT for the Hugging Face tests (transformers' ViTConfig keys)
TINY_VIT = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 64}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny ViT (4 classes) and its image processor written by save_pretrained."""
    from transformers import ViTConfig, ViTForImageClassification

    from common.models import hf_classifier

    folder = tmp_path_factory.mktemp("tiny-vit")
    ViTForImageClassification(ViTConfig(**TINY_VIT, num_labels=4)).save_pretrained(folder)
    hf_classifier.simple_processor(32).save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path, monkeypatch):
    """Keep caches and outputs of every test in its own temporary folder."""
    monkeypatch.setenv("VIT_CARS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VIT_CARS_OUTPUT", str(tmp_path / "out"))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A devkit-layout generated dataset: 6 classes, 10 train + 4 test images each."""
    root = tmp_path_factory.mktemp("synth") / "cars"
    synth.synth(root, classes=6, per_class=10, test_per_class=4, layout="devkit", size=48)
    return root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real Stanford Cars copy in ../shared (or CARS_DATA_DIR), else skip."""
    env = os.environ.get("CARS_DATA_DIR")
    root = Path(env) if env else paths.SHARED_DATA
    if not (root / "devkit" / "cars_meta.mat").is_file():
        pytest.skip(f"real dataset not available at {root} (set CARS_DATA_DIR to run this test)")
    return root


def smoke_environment(base: Path, environ: dict | None = None) -> dict:
    """The environment of a smoke run (``environ``, by default this process's, with these
    changes): its own output and cache folders, and a Hugging Face hub that refuses
    connections (a closed loopback port) with an empty cache."""
    env = {**(os.environ if environ is None else environ), "VIT_CARS_OUTPUT": str(base / "out"),
           "VIT_CARS_CACHE": str(base / "cache"), "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HOME": str(base / "hf-home"), "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(paths.ROOT / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)
    return env


def _papermill(name: str, base: Path, data: Path, env: dict) -> subprocess.CompletedProcess:
    """One notebook, as a user would run it: papermill's command line, with no parameter
    file and no parameter but ``profile`` and ``data_dir``."""
    import jupytext

    source = base / "source" / f"{name}.ipynb"
    source.parent.mkdir(exist_ok=True)
    jupytext.write(jupytext.read(paths.ROOT / "notebooks" / f"{name}.py"), source, fmt="ipynb")
    executed = base / "out" / "runs" / "smoke" / f"{name}.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "papermill", str(source), str(executed), "--cwd",
         str(paths.ROOT), "-p", "profile", "smoke", "-p", "data_dir", str(data),
         "--no-progress-bar"], env=env, capture_output=True, text=True, timeout=900)


SMOKE_CHAINS = [["05_efficientnet", "03_vit_finetune"],
                ["01_vit_scratch", "02_vit_scratch_10classes", "04_vit_finetune_10classes"]]
"""The smoke run's notebooks, two chains at a time; 02 starts from 01's network, so they run
one after the other."""


def _uses_smoke_run(item) -> bool:
    return "smoke_run" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config, items):
    """The tests that read the smoke run go last: the others run while it is under way."""
    items[:] = sorted(items, key=_uses_smoke_run)


def _smoke_folder(tmp_path_factory) -> Path:
    """The folder of the session's one smoke run, shared by pytest-xdist's workers (each has
    its own basetemp, below the session's)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _produce_smoke_run(folder: Path, environ: dict) -> Path:
    """Run the five notebooks into ``folder / "smoke-run"`` unless a worker or an earlier call
    did. Under a file lock the first caller runs them and writes ``smoke-run.json`` (with the
    failure, when a notebook fails); the others wait for that file and read it."""
    from filelock import FileLock

    record = folder / "smoke-run.json"
    with FileLock(folder / "smoke-run.lock"):
        if record.exists():
            return record
        base = folder / "smoke-run"
        payload = {"base": str(base), "data": str(base / "synth"), "failed": "", "stderr": {}}
        try:
            base.mkdir()
            synth.synth(base / "synth", classes=12, per_class=16, test_per_class=4, size=48)
            env = smoke_environment(base, environ)

            def run_chain(names):
                return {n: _papermill(n, base, base / "synth", env) for n in names}

            with ThreadPoolExecutor(max_workers=2) as pool:
                procs = {n: p for done in pool.map(run_chain, SMOKE_CHAINS)
                         for n, p in done.items()}
            payload["failed"] = "\n\n".join(f"{n} failed:\n{p.stderr[-3000:]}"
                                             for n, p in procs.items() if p.returncode != 0)
            payload["stderr"] = {n: p.stderr for n, p in procs.items()}
        except Exception as exc:  # recorded, so that no other test starts it again
            payload["failed"] = f"the smoke run stopped: {type(exc).__name__}: {exc}"
        with atomic.atomic_file(record) as f:
            json.dump(payload, f)
    return record


@pytest.fixture(scope="session", autouse=True)
def _smoke_run_in_background(request, tmp_path_factory):
    """When a selected test reads the smoke run, start the run at once in a thread: the tests
    that do not read it run meanwhile (they come first)."""
    if any(_uses_smoke_run(item) for item in request.session.items):
        threading.Thread(target=_produce_smoke_run, daemon=True,
                         args=(_smoke_folder(tmp_path_factory), dict(os.environ))).start()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The five notebooks, run once per test session on generated data (the smoke profile's
    data) by papermill's command line, two at a time. Returns the folders, the environment,
    each notebook's results and its executed copy."""
    record = _produce_smoke_run(_smoke_folder(tmp_path_factory), dict(os.environ))
    payload = json.loads(record.read_text(encoding="utf-8"))
    if payload["failed"]:
        raise AssertionError(payload["failed"])
    base = Path(payload["base"])
    out = base / "out"
    results = {n: json.loads((out / "results" / "smoke" / f"{n}.json").read_text())
               for n in NOTEBOOKS}
    executed = {n: (out / "runs" / "smoke" / f"{n}.ipynb").read_text(encoding="utf-8")
                for n in NOTEBOOKS}
    return {"base": base, "out": out, "data": Path(payload["data"]),
            "env": smoke_environment(base), "results": results, "executed": executed,
            "stderr": payload["stderr"]}


# --------------------------------------------------------------------------- doctored results

def doctored_results(out: Path, profile: str = "cpu", *, classes: int = 3, cores: int = 3,
                     dry_run: bool = False, official_test: bool = False,
                     n_images: int | None = None, other_test: tuple = (),
                     other_crop: tuple = (),
                     checkpoint: str = "facebook/deit-tiny-patch16-224",
                     accuracies: dict | None = None) -> dict:
    """Results files of the five notebooks, written by hand into ``out/results/<profile>``
    (the outputs of a dry run: ``<profile>-dry``), each with its predictions file: a setup
    the report must describe from these files alone. ``classes``: the classes of both tasks;
    ``other_test``: notebooks scored on other test images (another fingerprint);
    ``other_crop``: notebooks that read the same test images cropped on their boxes;
    ``accuracies``: notebook -> the test accuracy of its run chosen on validation. Returns
    each notebook's :class:`common.results.contract.Results`."""
    import hashlib

    import numpy as np

    from common.data.splits import inputs_fingerprint
    from common.results import predictions
    from common.results.contract import Results
    from common.results.metrics import wilson

    accuracies = {"01_vit_scratch": 0.30, "02_vit_scratch_10classes": 0.40,
                  "03_vit_finetune": 0.80, "04_vit_finetune_10classes": 0.90,
                  "05_efficientnet": 0.55, **(accuracies or {})}
    outputs = f"{profile}-dry" if dry_run else profile
    folder = out / "results" / outputs
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tests = {"all": [f"cars_test/{i:05d}.jpg" for i in range(120)]}
    tests["ten"] = tests["all"][:60]
    labels = {task: rng.integers(0, classes, len(ids)) for task, ids in tests.items()}
    collected = {}
    for notebook in NOTEBOOKS:
        task = NOTEBOOKS[notebook].task
        ids = [i.replace("cars_test", "other") for i in tests[task]] \
            if notebook in other_test else tests[task]
        y = labels[task]
        n = len(ids)
        right = round(accuracies[notebook] * n)
        pretrained = NOTEBOOKS[notebook].pretrained
        runs, frames = [], {}
        for k, (name, acc_right, val) in enumerate([("chosen", right, 0.6),
                                                    ("other", n - right, 0.5)]):
            predicted = np.where(np.arange(n) < acc_right, y, (y + 1) % classes)
            probs = np.eye(classes)[predicted] + 0.01
            frames[name] = predictions.table(ids, y, probs)
            accuracy = acc_right / n
            weights = ({"source": checkpoint if notebook.startswith(("03", "04"))
                        else "imagenet", "pretrained": True, "reason": None}
                       if pretrained else {"source": "random-init", "pretrained": False,
                                           "reason": None})
            runs.append({
                "name": name, "weights": weights, "model_dir": f"models/{outputs}/{name}",
                "params": {"model_parameters": 5_500_000} if pretrained else {},
                "metrics": {"test_accuracy": accuracy, "test_top5_accuracy": 1.0,
                            "test_macro_f1": accuracy, "best_val_accuracy": val,
                            "test_images": n,
                            "test_accuracy_ci95": wilson(acc_right, n)},
                "history": {h: [0.5] * (4 + k) for h in ("loss", "val_loss", "accuracy",
                                                         "val_accuracy")},
                "best_epoch": 3, "checkpoint_rule": {"metric": "val_accuracy",
                                                     "from_epoch": 2},
                "train_seconds": 10.0, "train_images_per_second": 5.0})
        csv = predictions.to_csv(frames)
        (folder / f"{notebook}.predictions.csv").write_bytes(csv)
        total = n_images if n_images is not None else 600
        crop = "crop bbox 0.1" if notebook in other_crop else "crop squash"
        payload = {
            "notebook": notebook, "profile": profile, "dry_run": dry_run,
            "created": "2024-01-01T00:00:00+00:00", "duration_s": 60.0, "git_commit": "abc1234",
            "environment": {"python": "3.11", "keras": "3", "tensorflow": None, "torch": "2",
                            "transformers": "4", "lock": None, "keras_backend": None,
                            "device": f"CPU ({cores} cores, x86_64)", "cores": cores,
                            "gpus": 0},
            "params": {"checkpoint": checkpoint} if notebook.startswith(("03", "04")) else {},
            "dataset": {"root": "/data/cars", "layout": "devkit", "synthetic": False,
                        "task": task, "n_classes": classes,
                        "class_ids": list(range(1, classes + 1)), "n_images": total,
                        "images_per_class": [total // classes, total // classes],
                        "official_test": official_test,
                        "split": {"seed": 0, "val_fraction": 0.15,
                                  "test_fraction": None if official_test else 0.2},
                        "split_sizes": {"train": total - 2 * n, "val": n, "test": n},
                        "test_set": {"images": n, "crop": crop,
                                     "fingerprint": inputs_fingerprint(ids, crop)}},
            "runs": runs, "figures": [],
            "predictions": {"file": f"results/{outputs}/{notebook}.predictions.csv",
                            "sha256": hashlib.sha256(csv).hexdigest()}}
        (folder / f"{notebook}.json").write_text(json.dumps(payload), encoding="utf-8")
        collected[notebook] = Results.model_validate(payload)
    return collected
