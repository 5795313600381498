"""Time to accuracy of one from-scratch ViT recipe: how long it trains before its test
accuracy reaches a target, and its test accuracy at fixed training times.

    python benchmarks/time_to_accuracy.py                       # 02's fast-scratch recipe
    python benchmarks/time_to_accuracy.py --run fast-scratch --target 0.245 --every 30

The recipe is a run of a params file, chosen beforehand on validation (the exploration
journal, explorations/); this curve measures it and chooses nothing. The model is scored on
the task's test set at the end of every epoch; the clock counts the training steps only
(augmentation included), not these evaluations nor the epoch's validation. Prints the
curve, the training time at which test top-1 first reached the target, and the test top-1
of the checkpoint that the recipe keeps (best validation epoch) with its 95 % interval.
``--json FILE`` also writes all of it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from common.config import loading  # noqa: E402
from common.config.study import TASKS  # noqa: E402
from common.core import paths, runtime  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", default="02_vit_scratch_10classes")
    parser.add_argument("--run", default="fast-scratch")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--target", type=float, default=0.245,
                        help="test top-1 to reach (default 0.245, the best 10-class "
                             "from-scratch figure of 2022)")
    parser.add_argument("--every", type=float, default=30.0,
                        help="seconds of training between two points of the curve")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="the dataset folder (default: the study "
                        "file's, else CARS_DATA_DIR, else the shared copy)")
    parser.add_argument("--json", type=Path, help="also write the measures to this file")
    args = parser.parse_args(argv)

    data = args.data
    if data is None and not os.environ.get("CARS_DATA_DIR") and not paths.data_dir().is_dir():
        data = paths.SHARED_DATA
    if data is not None and not Path(data).is_dir():
        parser.error(f"no dataset at {data}: set CARS_DATA_DIR or give --data")
    params = loading.load(args.notebook, args.profile, data_dir=data)
    cfg = next((r for r in params.runs if r.name == args.run), None)
    if cfg is None:
        parser.error(f"{params.file} has no run {args.run!r}")
    if cfg.init_from:
        parser.error(f"run {args.run!r} starts from another notebook's network "
                     f"(init_from): this benchmark times recipes from scratch")
    runtime.prepare_keras(params)
    import keras

    from common.data import images
    from common.data.study import load_task
    from common.inference.probabilities import keras_probabilities
    from common.results.metrics import wilson
    from common.training import vit_runs

    task = load_task(params.study, TASKS[args.notebook])
    x_te, t_te = images.load_images(task.parts.test, cfg.image_size, cfg.crop_mode,
                                    cfg.crop_margin)
    y_te = t_te["label"].to_numpy()

    class TestCurve(keras.callbacks.Callback):
        """Test top-1 at the end of each epoch, against the training steps' seconds."""

        def __init__(self):
            super().__init__()
            self.seconds, self.points = 0.0, []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if logs and "loss" in logs:
                float(logs["loss"])  # the step has finished
            self._last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds += self._last - self._start
            probs = keras_probabilities(self.model, x_te, cfg.batch_size)
            acc = float((probs.argmax(axis=1) == y_te).mean())
            self.points.append({"epoch": epoch + 1, "train_seconds": round(self.seconds, 2),
                                "test_accuracy": acc,
                                "val_accuracy": float((logs or {}).get("val_accuracy", 0))})

    curve = TestCurve()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tta-") as folder:
        out, _, _ = vit_runs.train_config(cfg, task.parts, labels=task.labels,
                                          model_dir=folder, seed=args.seed, verbose=0,
                                          callbacks=[curve])
        kept = keras_probabilities(out["model"], x_te, cfg.batch_size,
                                   flip=cfg.test_time_flip)
    hits = int((kept.argmax(axis=1) == y_te).sum())
    reached = next((p for p in curve.points if p["test_accuracy"] >= args.target), None)
    marks = []
    for k in range(1, int(curve.seconds // args.every) + 2):
        done = [p for p in curve.points if p["train_seconds"] <= k * args.every]
        if done:
            marks.append({"seconds": k * args.every, **done[-1]})
    print(f"{args.notebook} {args.run}: {cfg.epochs} epochs, {curve.seconds:.0f} s of "
          f"training on {os.cpu_count()} cores (load average {load:.2f} before), "
          f"{len(y_te)} test images")
    print(f"{'seconds':>8} {'epoch':>6} {'test top-1':>11} {'val top-1':>10}")
    for m in marks:
        print(f"{m['seconds']:>8.0f} {m['epoch']:>6d} {m['test_accuracy']:>11.1%} "
              f"{m['val_accuracy']:>10.1%}")
    if reached:
        print(f"time to {args.target:.1%} test top-1: {reached['train_seconds']:.0f} s of "
              f"training (epoch {reached['epoch']})")
    else:
        print(f"time to {args.target:.1%} test top-1: not reached in {curve.seconds:.0f} s")
    low, high = wilson(hits, len(y_te))
    print(f"kept checkpoint (best validation, epoch {out['best_epoch']}): test top-1 "
          f"{hits / len(y_te):.1%} (95 % interval {low:.1%}-{high:.1%})")
    if args.json:
        args.json.write_text(json.dumps({
            "notebook": args.notebook, "run": args.run, "settings": cfg.model_dump(),
            "seed": args.seed, "target": args.target, "cores": os.cpu_count(),
            "load_before": load, "train_seconds": curve.seconds,
            "time_to_target": reached and reached["train_seconds"], "marks": marks,
            "points": curve.points, "kept": {"epoch": out["best_epoch"],
                                             "test_accuracy": hits / len(y_te),
                                             "interval": [low, high]}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
