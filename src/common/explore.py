"""Exploration runs (``python -m common explore``): train one run of a from-scratch ViT
notebook with some settings changed, score it on validation only, and write a row of the exploration
journal (:mod:`common.results.journal`). The test set is never read.

    python -m common explore 02_vit_scratch_10classes fast-scratch -p epochs 150 \
        -p network.image_size 64 --seeds 0 1 2 --note "64 px, 3 seeds"

``-p KEY VALUE`` changes a key of that run, or a process switch of the notebook
(``mixed_precision``, ``keras_backend``, ``torch_threads``); VALUE is read as YAML. The row
records exactly those changes, against the params file of the commit it names. A run with
``test_time_flip`` is scored as its test will be: the network kept on plain validation
accuracy, its probabilities averaged over each validation image and its mirror image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


from common.config import loading, schema
from common.config.study import NOTEBOOKS, SCRATCH
from common.core import paths, runtime
from common.results import journal



def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=paths.ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=paths.ROOT, capture_output=True, text=True).stdout.strip()
        return out + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def explore(notebook: str, run: str, settings: dict, seeds: list[int], profile: str = "cpu",
            note: str = "", journal_path=None, data_dir=None, verbose: int = 2,
            torch_threads: int | None = None, keep=None) -> list[dict]:
    """Train run ``run`` of ``notebook`` with ``settings`` changed, once per seed; append
    one journal row per seed and return the rows. ``torch_threads``: instead of the params
    file's (one each lets two explorations share a 2-core machine). ``keep``: a folder where
    the last seed's network is kept as a model folder (its checkpoint and labels), for a
    later exploration that starts from it (``init_from``, with ``VIT_CARS_OUTPUT``)."""
    if notebook not in SCRATCH:
        raise loading.ConfigError(f"exploration runs are for the from-scratch ViT notebooks "
                                  f"({', '.join(SCRATCH)}), not {notebook!r}")
    # a process switch (mixed_precision, keras_backend, torch_threads) is the notebook's,
    # any other key the run's
    overrides = {key if key in schema.KerasSwitches.model_fields else f"runs.{run}.{key}": value
                 for key, value in settings.items()}
    params = loading.load(notebook, profile, data_dir=data_dir, **overrides)
    cfg = next((r for r in params.runs if r.name == run), None)
    if cfg is None:
        raise loading.ConfigError(f"{params.file}: no run named {run!r}; the runs are "
                                  f"{', '.join(r.name for r in params.runs)}")
    if torch_threads is not None:
        params = params.model_copy(update={"torch_threads": torch_threads})
    runtime.prepare_keras(params)
    from common.data.task import load_task  # after the Keras backend is chosen
    from common.models import folder as model_folder
    from common.training import vit_runs

    task = load_task(params.study, NOTEBOOKS[notebook].task)
    init_from = None
    if cfg.init_from:
        init_from = (paths.models_dir(params.outputs, NOTEBOOKS[notebook].starts_from,
                                      final=True) / cfg.init_from)
    path = journal_path or journal.journal_file(notebook)
    commit = _commit()  # the code and params the runs start from
    rows = []
    for seed in seeds:
        load = os.getloadavg()[0]
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="explore-") as folder:
            out, _, stats = vit_runs.train_config(cfg, task.parts, labels=task.labels,
                                                  model_dir=folder, seed=seed,
                                                  verbose=verbose, init_from=init_from)
            if keep is not None:
                kept = Path(keep)
                kept.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(folder) / model_folder.KERAS_FILE,
                                kept / model_folder.KERAS_FILE)
                vit_runs.write_model_info(cfg, kept, task.labels, stats, task.parts)
            val_accuracy = out["best_val_accuracy"]
            if cfg.test_time_flip:  # scored as its test will be: each image and its mirror
                val_accuracy = _flipped_val_accuracy(out["model"], cfg, task.parts, seed)
        row = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
               "commit": commit, "notebook": notebook, "run": run,
               "settings": journal.settings_text(settings), "seed": seed,
               "val_accuracy": round(val_accuracy, 4),
               "val_images": len(task.budget(cfg.cap_per_class, seed=seed).val),
               "best_epoch": out["best_epoch"], "epochs": cfg.epochs,
               "train_seconds": round(out["train_seconds"], 1),
               "seconds": round(time.perf_counter() - started, 1),
               "images_per_second": round(out["train_images_per_second"], 1),
               "cores": os.cpu_count(), "load_before": round(load, 2), "note": note,
               "ran_with": journal.settings_text(journal.ran_with(params, cfg))}
        journal.append(path, row)
        print(f"{run} seed {seed}: val {row['val_accuracy']:.1%} (epoch {row['best_epoch']}/"
              f"{cfg.epochs}), {row['train_seconds']:.0f} s of training -> {path}")
        rows.append(row)
    return rows


def _flipped_val_accuracy(model, cfg: schema.KerasVitRun, parts, seed: int) -> float:
    """The validation accuracy of the kept network (chosen on plain validation accuracy),
    its probabilities averaged over each image and its mirror image, as ``test_time_flip``
    scores the test set."""
    from common.inference.probabilities import keras_probabilities
    from common.training import vit_runs

    arrays = vit_runs.load_arrays(cfg, parts, seed=seed)
    probs = keras_probabilities(model, arrays.x_val, cfg.batch_size, flip=True)
    return float((probs.argmax(axis=1) == arrays.y_val).mean())
