"""Where an epoch of notebook 01's improved run goes, second by second, as the notebook
trains it: data handling, augmentation, mixing, training steps, validation, callbacks.

    PYTHONPATH=src python benchmarks/profile_epoch.py
    PYTHONPATH=src python benchmarks/profile_epoch.py --epochs 6 --json profile.json

It trains the run of params/cpu/01_vit_scratch.yaml (default improved-hybrid) for
``--epochs`` epochs on the real training split (CARS_DATA_DIR, else the shared copy),
through ``common.training.vit_runs.train_config`` as the notebook does, and times each part
with wrappers around the functions that do it; the table is the median of the epochs after
the first (which allocates and picks kernels). The batches are made in the training loop's
thread, so "training steps" is the epoch's training time less the batches' time. The test
set is never read.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from common.config import loading  # noqa: E402
from common.config.study import NOTEBOOKS  # noqa: E402
from common.core import paths, runtime  # noqa: E402

SPENT: dict[str, float] = defaultdict(float)


def timed(owner, name: str, key: str) -> None:
    """Add the time of every call of ``owner.name`` to ``SPENT[key]``."""
    inner = getattr(owner, name)

    @functools.wraps(inner)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            SPENT[key] += time.perf_counter() - t

    setattr(owner, name, wrapper)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="improved-hybrid")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    data = None
    if not os.environ.get("CARS_DATA_DIR") and not paths.data_dir().is_dir():
        data = paths.SHARED_DATA
    if data is not None and not Path(data).is_dir():
        parser.error(f"no dataset at {data}: set CARS_DATA_DIR")
    params = loading.load("01_vit_scratch", "cpu", data_dir=data)
    cfg = next((r for r in params.runs if r.name == args.run), None)
    if cfg is None:
        parser.error(f"params/cpu/01_vit_scratch.yaml has no run {args.run!r}")
    optimiser = cfg.optimiser.model_copy(
        update={"warmup_epochs": min(cfg.optimiser.warmup_epochs, 1)})
    cfg = cfg.model_copy(update={"epochs": args.epochs, "optimiser": optimiser})
    runtime.prepare_keras(params)

    import keras

    from common.data.task import load_task
    from common.training import batch_augmentation as augmentation
    from common.training import callbacks, keras_fit, vit_runs

    timed(keras_fit.Batches, "__getitem__", "batches")
    timed(augmentation.TorchAugmentation, "__call__", "augmentation")
    timed(keras_fit, "mix_tensor", "mixing")
    timed(callbacks.BestCheckpoint, "on_epoch_end", "checkpoint")
    epochs: list[dict] = []

    class Phases(keras.callbacks.Callback):
        """Each epoch's training and validation time, and what the wrappers counted."""

        def on_epoch_begin(self, epoch, logs=None):
            SPENT.clear()
            self.start = time.perf_counter()

        def on_test_begin(self, logs=None):  # what the training batches took, alone
            self.trained, self.spent = time.perf_counter(), dict(SPENT)

        def on_test_end(self, logs=None):
            self.validated = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epochs.append({"train": self.trained - self.start,
                           "validation": self.validated - self.trained,
                           "end": time.perf_counter(), **self.spent})

    task = load_task(params.study, NOTEBOOKS["01_vit_scratch"].task)
    with tempfile.TemporaryDirectory(prefix="profile-") as folder:
        out, _, _ = vit_runs.train_config(cfg, task.parts, labels=task.labels,
                                          model_dir=folder, verbose=0, callbacks=[Phases()])
    rows = []
    for e in epochs[1:] or epochs:
        batches = e.get("batches", 0.0)
        aug, mix = e.get("augmentation", 0.0), e.get("mixing", 0.0)
        rows.append({"training steps (forward, backward, optimizer)": e["train"] - batches,
                     "data handling (index, uint8 to float)": batches - aug - mix,
                     "augmentation (flip and affine warp)": aug,
                     "mixing (mixup, CutMix)": mix,
                     "validation": e["validation"],
                     "callbacks (checkpoint)": e.get("checkpoint", 0.0)})
    table = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    total = sum(table.values())
    images = len(task.parts.train)
    print(f"01 {cfg.name}: {images} training images, "
          f"{len(task.parts.val)} validation, {os.cpu_count()} cores; median of "
          f"{len(rows)} epochs; notebook rate {out['train_images_per_second']:.0f} images/s")
    print(f"{'part of the epoch':48s} {'seconds':>8s} {'share':>6s} {'ms/image':>9s}")
    for k, v in table.items():
        print(f"{k:48s} {v:8.1f} {v / total:6.0%} {1e3 * v / images:9.2f}")
    print(f"{'epoch':48s} {total:8.1f} {1:6.0%} {1e3 * total / images:9.2f}")
    if args.json:
        args.json.write_text(json.dumps({"run": cfg.name, "table": table,
                                         "images": images,
                                         "images_per_second": out["train_images_per_second"]},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
