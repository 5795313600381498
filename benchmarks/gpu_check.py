"""Training throughput of the gpu profile, measured with the project's own code; one JSON.

    KERAS_BACKEND=torch python benchmarks/gpu_check.py [--cpu] [--data DIR] [--out FILE]

Run by ``benchmarks/gpu_check.sh`` (one command, at most 9 minutes on one H200). It measures
training images/s of:

1. ViT-B/16 fine-tuning at 224 px with the Hugging Face ``Trainer`` (bf16, SDPA attention,
   TF32 matmuls), random weights (the speed does not depend on them);
2. the from-scratch Keras ViT configurations of the gpu profile (notebooks 01 and 02), on
   the torch backend;
3. EfficientNetB0 (frozen backbone, then the top unfrozen);

then runs notebook 02's improved configuration and notebook 04's fine-tuning for a few
epochs at their gpu settings on a 10-class subset (``--data``), through the same functions
as the notebooks. ``--cpu`` shrinks every amount so that the whole check runs on a CPU in a
few minutes (the tests run it so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

from common.config import loading, schema  # noqa: E402
from common.core import runtime  # noqa: E402

SCRATCH = Path(os.environ.get("TMPDIR", "/tmp"))  # models the check trains, then forgets


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def images(n: int, size: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
            rng.integers(0, classes, n))


def vit_b16(cpu: bool, steps: int) -> dict:
    """ViT-B/16 fine-tuning throughput with the project's Trainer code."""
    from transformers import AutoModelForImageClassification, ViTConfig

    from common.models import hf_classifier
    from common.training import hf_trainer

    size, batch = (32, 8) if cpu else (224, 256)
    vit = ViTConfig(image_size=size, patch_size=16 if not cpu else 8, num_labels=196,
                    **({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                        "intermediate_size": 128} if cpu else {}))
    model = AutoModelForImageClassification.from_config(vit, attn_implementation="sdpa")
    clf = hf_classifier.Classifier(model, hf_classifier.simple_processor(size), weights={},
                                   checkpoint="random")
    x, y = images(batch * steps, size, 196)
    settings = schema.HfTraining(
        epochs=2, batch_size=batch, eval_batch_size=batch, learning_rate=2e-5,
        train_eval_images=batch, mixed_precision=True, dataloader_workers=0 if cpu else 8,
        flip=True, crop_scale=(0.7, 1.0), attention="sdpa", tf32=True)
    fit = hf_trainer.fine_tune(clf, x, y, x[:batch], y[:batch], settings, seed=0)
    return {"images_per_second": fit["train_images_per_second"], "image_size": size,
            "batch_size": batch, "images": len(x), "epochs": 2}


def keras_configs(cpu: bool, steps: int) -> list[dict]:
    """The gpu profile's from-scratch ViT configurations, on random images."""
    from common.training import keras_fit, vit_runs

    runtime.set_keras_precision(not cpu)
    out = []
    for nb in ("01_vit_scratch", "02_vit_scratch_10classes"):
        for cfg in loading.load(nb, "gpu").runs:
            size = cfg.image_size
            batch = 8 if cpu else cfg.batch_size
            if cpu:
                size = 32 if not cfg.stem_channels else 2 ** len(cfg.stem_channels) * 2
                cfg = schema.KerasVitRun.model_validate({
                    **cfg.model_dump(), "image_size": size, "transformer_layers": 1,
                    "patch_size": cfg.patch_size if cfg.stem_channels else 8})
            x, y = images(batch * steps, size, 196)
            model = vit_runs.build_from_config(cfg, 196, x.reshape(-1, 3).astype(float))
            keras_fit.compile_classifier(model, keras_fit.make_optimizer(),
                                         jit_compile=cfg.jit_compile)
            trained = keras_fit.train(
                model, x, y, x[:batch], y[:batch], epochs=2, batch_size=batch, verbose=0,
                checkpoint_path=SCRATCH / "gpu_check.keras",
                augmentation="none" if cfg.augment_in_model else cfg.augmentation)
            out.append({"notebook": nb, "run": cfg.name, "image_size": size,
                        "batch_size": batch, "images_per_second":
                        trained["train_images_per_second"]})
    runtime.set_keras_precision(False)
    return out


def efficientnet(cpu: bool, steps: int) -> dict:
    from common.models import efficientnet as effnet
    from common.training import keras_fit

    size, batch = (32, 8) if cpu else (224, 128)
    x, y = images(batch * steps, size, 196)
    model, _ = effnet.build(196, size, weights=str(Path("/nonexistent.h5")))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    trained = keras_fit.train(model, x, y, x[:batch], y[:batch], epochs=2,
                              batch_size=batch, verbose=0,
                              checkpoint_path=SCRATCH / "gpu_check_effnet.keras")
    return {"image_size": size, "batch_size": batch,
            "images_per_second": trained["train_images_per_second"]}


def notebooks_02_04(data: Path, cpu: bool, epochs: int) -> dict:
    """02's improved run and 04's fine-tuning at their gpu settings, a few epochs."""
    from common.data.study import load_task
    from common.training import finetune_runs, vit_runs

    out = {}
    p02 = loading.load("02_vit_scratch_10classes", "gpu", dry_run=cpu, data_dir=data)
    # the whole 10-class data (the split of the study file), even with --cpu
    task = load_task(p02.study, "ten")
    # the speed is what is measured here: from random weights, not from 01's network
    improved = schema.KerasVitRun.model_validate(
        {**p02.runs[-1].model_dump(), "init_from": None, "epochs": epochs})
    runtime.set_keras_precision(p02.mixed_precision and not cpu)
    record, _ = vit_runs.fit_config(improved, task.parts, labels=task.labels, seed=p02.seed,
                                    model_dir=SCRATCH / "gpu_check_02", verbose=0)
    runtime.set_keras_precision(False)
    out["02_improved"] = {k: record[k] for k in ("train_seconds", "train_images_per_second")}
    out["02_improved"]["test_accuracy"] = record["metrics"]["test_accuracy"]
    p04 = loading.load("04_vit_finetune_10classes", "gpu", dry_run=cpu, data_dir=data)
    # with --cpu, at most the dry run's images per split, as notebook 04 takes them
    task = load_task(p04.study, "ten", loading.limits(p04))
    run = schema.HfRun.model_validate({**p04.runs[0].model_dump(), "epochs": epochs})
    # a random stand-in when the pretrained weights are missing (a GPU box without network;
    # the speed does not depend on them): the dry run's rule, without its other amounts
    p04 = p04.model_copy(update={"dry_run": True})
    record, _ = finetune_runs.fit_config(run, task.parts, task.labels, p04,
                                         model_dir=SCRATCH / "gpu_check_04")
    out["04_balanced"] = {k: record[k] for k in ("train_seconds", "train_images_per_second")}
    out["04_balanced"]["weights"] = record["weights"]["source"]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="tiny amounts, for a CPU")
    parser.add_argument("--data", type=Path, help="a Stanford Cars folder (or 10-class subset)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    args = parser.parse_args(argv)
    import torch

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    steps = 3 if args.cpu else 20
    report = {"device": device_name(), "cpu_mode": args.cpu, "torch": torch.__version__,
              "keras_backend": os.environ["KERAS_BACKEND"], "target_vit_b16": 2500}
    started = time.time()
    for name, job in (("vit_b16_finetune", lambda: vit_b16(args.cpu, steps)),
                      ("keras_vit", lambda: keras_configs(args.cpu, steps)),
                      ("efficientnetb0", lambda: efficientnet(args.cpu, steps))):
        t0 = time.time()
        report[name] = job()
        print(f"{name}: {json.dumps(report[name])} ({time.time() - t0:.0f} s)", flush=True)
    if args.data:
        report["notebooks"] = notebooks_02_04(args.data, args.cpu, 1 if args.cpu else 5)
        print(f"notebooks: {json.dumps(report['notebooks'])}", flush=True)
    report["seconds"] = round(time.time() - started, 1)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
