"""Shared fixtures: generated datasets in the three layouts, the shared real dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common import data, paths


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path, monkeypatch):
    """Keep caches and outputs of every test in its own temporary folder."""
    monkeypatch.setenv("VIT_CARS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VIT_CARS_OUTPUT", str(tmp_path / "out"))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A devkit-layout generated dataset: 6 classes, 10 train + 4 test images each."""
    root = tmp_path_factory.mktemp("synth") / "cars"
    data.synth(root, classes=6, per_class=10, test_per_class=4, layout="devkit", size=48)
    return root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real Stanford Cars copy in ../shared (or CARS_DATA_DIR), else skip."""
    env = os.environ.get("CARS_DATA_DIR")
    root = Path(env) if env else paths.SHARED_DATA
    if not (root / "devkit" / "cars_meta.mat").is_file():
        pytest.skip(f"real dataset not available at {root} (set CARS_DATA_DIR to run this test)")
    return root
