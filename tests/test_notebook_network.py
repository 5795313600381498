"""Notebook 01 shows its network: the keras.io ViT is defined in the notebook's own cell, the
training calls that definition (a layer added there is in the saved model), and it builds
the same layers as the package's ``build_vit`` that 02 and the benchmarks use."""

from __future__ import annotations

import subprocess
import sys

import jupytext
import keras
import numpy as np
import pytest

from common.config import loading
from common.core import paths
from common.models import vit

NOTEBOOK = paths.ROOT / "notebooks" / "01_vit_scratch.py"
DEFINITION = "def create_vit_classifier("


def _network_cell() -> str:
    cells = [c.source for c in jupytext.read(NOTEBOOK).cells
             if c.cell_type == "code" and DEFINITION in c.source]
    assert len(cells) == 1, "notebook 01 defines create_vit_classifier in one cell"
    return cells[0]


def _layers(model: keras.Model) -> list[tuple]:
    return [(layer.name, type(layer).__name__, [tuple(w.shape) for w in layer.weights])
            for layer in model.layers]


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_the_notebooks_network_is_the_packages(profile):
    namespace: dict = {}
    exec(compile(_network_cell(), str(NOTEBOOK), "exec"), namespace)
    stats = (np.full(3, 120.0), np.full(3, 900.0))
    for cfg in loading.load("01_vit_scratch", profile).runs:
        mine = namespace["create_vit_classifier"](cfg.network, cfg.augmentation, 7, stats,
                                                  cfg.name)
        theirs = vit.build_vit(cfg.network, cfg.augmentation, 7, stats, name=cfg.name)
        assert _layers(mine) == _layers(theirs), (profile, cfg.name)
        assert mine.count_params() == theirs.count_params()


@pytest.mark.slow
def test_a_layer_added_in_the_notebook_is_in_the_saved_model(smoke_run, tmp_path):
    cell = _network_cell()
    head = '    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)'
    assert head in cell
    edited = jupytext.read(NOTEBOOK)
    for c in edited.cells:
        if c.source == cell:
            c.source = cell.replace(head, '    x = layers.Dense(24, activation="relu", '
                                          'name="extra_head")(x)\n' + head)
    copy = tmp_path / "notebooks" / NOTEBOOK.name
    copy.parent.mkdir()
    jupytext.write(edited, copy, fmt="py:percent")
    out = tmp_path / "out"
    env = {**smoke_run["env"], "VIT_CARS_OUTPUT": str(out)}
    proc = subprocess.run([sys.executable, "-m", "common", "run", str(copy), "--profile",
                           "smoke", "-p", "data_dir", str(smoke_run["data"])], cwd=paths.ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folders = sorted((out / "models" / "smoke" / "01_vit_scratch").iterdir())
    assert folders
    for folder in folders:
        model = keras.saving.load_model(folder / "model.keras", safe_mode=True)
        extra = model.get_layer("extra_head")
        assert extra.units == 24 and model.get_layer("logits").input.shape[-1] == 24
