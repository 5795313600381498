"""Time to accuracy of one from-scratch ViT recipe, on validation: how long it trains
before its validation accuracy reaches a target, and its validation accuracy at fixed
training times; then its test accuracy, once, for the checkpoint the recipe keeps.

    python benchmarks/time_to_accuracy.py                       # 02's fast-scratch recipe
    python benchmarks/time_to_accuracy.py --run fast-scratch --target 0.245 --every 30

The recipe is a run of a params file, chosen beforehand on validation (the exploration
journal, explorations/); this curve measures it and chooses nothing. The curve is the
validation accuracy that training measures at the end of every epoch, against the training
steps' seconds (augmentation included, validation excluded). The test set is read once, at
the end: the test top-1 of the kept checkpoint (best validation epoch), with its 95 %
interval. Beside it, what differs from the 2022 figure it is set against (architecture,
input, epochs, hardware). ``--json FILE`` also writes all of it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from common.config import loading  # noqa: E402
from common.config.study import NOTEBOOKS  # noqa: E402
from common.core import paths, runtime  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", default="02_vit_scratch_10classes")
    parser.add_argument("--run", default="fast-scratch")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--target", type=float, default=0.245,
                        help="validation top-1 to reach (default 0.245, the best 10-class "
                             "from-scratch test figure of 2022)")
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
    from common.data import images
    from common.data.task import load_task
    from common.inference.probabilities import keras_probabilities
    from common.results.metrics import wilson
    from common.training import vit_runs

    task = load_task(params.study, NOTEBOOKS[args.notebook].task)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tta-") as folder:
        out, _, _ = vit_runs.train_config(cfg, task.parts, labels=task.labels,
                                          model_dir=folder, seed=args.seed, verbose=0)
        points, seconds = [], 0.0
        for epoch, (spent, val) in enumerate(zip(out["epoch_seconds"],
                                                 out["history"]["val_accuracy"]), start=1):
            seconds += spent
            points.append({"epoch": epoch, "train_seconds": round(seconds, 2),
                           "val_accuracy": float(val)})
        # the test set, once: the checkpoint the recipe keeps
        x_te, t_te = images.load_images(task.parts.test, cfg.network.image_size, *task.parts.crop)
        y_te = t_te["label"].to_numpy()
        kept = keras_probabilities(out["model"], x_te, cfg.batch_size,
                                   flip=cfg.test_time_flip)
    hits = int((kept.argmax(axis=1) == y_te).sum())
    reached = next((p for p in points if p["val_accuracy"] >= args.target), None)
    marks = []
    for k in range(1, int(seconds // args.every) + 2):
        done = [p for p in points if p["train_seconds"] <= k * args.every]
        if done:
            marks.append({"seconds": k * args.every, **done[-1]})
    print(f"{args.notebook} {args.run}: {cfg.epochs} epochs, {seconds:.0f} s of training on "
          f"{os.cpu_count()} cores (load average {load:.2f} before), "
          f"{len(task.parts.val)} validation images")
    print(f"{'seconds':>8} {'epoch':>6} {'val top-1':>10}")
    for m in marks:
        print(f"{m['seconds']:>8.0f} {m['epoch']:>6d} {m['val_accuracy']:>10.1%}")
    if reached:
        print(f"time to {args.target:.1%} validation top-1: {reached['train_seconds']:.0f} s "
              f"of training (epoch {reached['epoch']})")
    else:
        print(f"time to {args.target:.1%} validation top-1: not reached in {seconds:.0f} s")
    low, high = wilson(hits, len(y_te))
    print(f"kept checkpoint (best validation, epoch {out['best_epoch']}): test top-1 "
          f"{hits / len(y_te):.1%} (95 % interval {low:.1%}-{high:.1%}, {len(y_te)} images)")
    differences = against_2022(cfg, task.parts.crop[0], os.cpu_count())
    print("against 2022's 24.5 % (72 px, patch 8): " + "; ".join(differences))
    if args.json:
        args.json.write_text(json.dumps({
            "notebook": args.notebook, "run": args.run, "settings": cfg.model_dump(),
            "seed": args.seed, "target": args.target, "target_on": "validation",
            "cores": os.cpu_count(), "load_before": load, "train_seconds": seconds,
            "time_to_target": reached and reached["train_seconds"], "marks": marks,
            "points": points, "against_2022": differences,
            "kept": {"epoch": out["best_epoch"], "test_accuracy": hits / len(y_te),
                     "test_images": len(y_te), "interval": [low, high]}}, indent=1))
    return 0


def against_2022(cfg, crop: str, cores: int | None) -> list[str]:
    """What differs between this run and the 2022 10-class figure it is set against: the
    keras.io ViT at 72 px, patches of 8, whole images, 100 epochs on a Colab GPU."""
    architecture = (f"hybrid ViT (stem {cfg.network.stem_channels}) against a pure ViT"
                    if cfg.network.stem_channels else "the same pure ViT")
    return [f"architecture: {architecture}",
            f"input: {cfg.network.image_size} px, {crop} crops, against 72 px whole images",
            f"epochs: {cfg.epochs} against 100",
            f"hardware: {cores} CPU cores against a GPU"]


if __name__ == "__main__":
    sys.exit(main())
