"""Shared fixtures: generated datasets, the shared real dataset, and one smoke run of the
five notebooks for the whole test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from common.config.study import NOTEBOOKS
from common.core import paths
from common.data import synth

HUB_ID = "google/vit-base-patch16-224-in21k"


def task_of(root, class_ids=None, val_fraction=0.25, test_fraction=0.2, seed=0):
    """The study's data entry point on ``root``: all classes, or ``class_ids`` as the
    10-class task does."""
    from common.config.schema import Study
    from common.data.study import load_task

    study = Study(data_dir=str(root), split_seed=seed, val_fraction=val_fraction,
                  test_fraction=test_fraction, **({"ten_classes": class_ids} if class_ids else {}))
    return load_task(study, "ten" if class_ids else "all")


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


def smoke_environment(base: Path) -> dict:
    """The environment of a smoke run: its own output and cache folders, and a Hugging Face
    hub that refuses connections (a closed loopback port) with an empty cache."""
    env = {**os.environ, "VIT_CARS_OUTPUT": str(base / "out"),
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


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The five notebooks, run once per test session on generated data (the smoke profile's
    data), two at a time. Returns the folders, the environment, each notebook's results and
    its executed copy."""
    base = tmp_path_factory.mktemp("smoke-run")
    data = synth.synth(base / "synth", classes=12, per_class=16, test_per_class=4, size=48)
    env = smoke_environment(base)
    # two at a time; 02 starts from 01's network, so they run one after the other
    chains = [["05_efficientnet", "03_vit_finetune"],
              ["01_vit_scratch", "02_vit_scratch_10classes", "04_vit_finetune_10classes"]]

    def run_chain(names):
        return {n: _papermill(n, base, data, env) for n in names}

    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = {n: p for done in pool.map(run_chain, chains) for n, p in done.items()}
    failed = {n: p for n, p in procs.items() if p.returncode != 0}
    if failed:
        raise AssertionError("\n\n".join(f"{n} failed:\n{p.stderr[-3000:]}"
                                         for n, p in failed.items()))
    out = base / "out"
    results = {n: json.loads((out / "results" / "smoke" / f"{n}.json").read_text())
               for n in NOTEBOOKS}
    executed = {n: (out / "runs" / "smoke" / f"{n}.ipynb").read_text(encoding="utf-8")
                for n in NOTEBOOKS}
    return {"base": base, "out": out, "data": data, "env": env, "results": results,
            "executed": executed, "stderr": {n: p.stderr for n, p in procs.items()}}
