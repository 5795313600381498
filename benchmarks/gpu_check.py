"""Training throughput of the gpu profile, measured with the project's own code; one JSON.

    python benchmarks/gpu_check.py [--cpu] [--data DIR] [--out FILE] [--budget-s 480]

Run by ``benchmarks/gpu_check.sh`` (one command, well inside 9 minutes on one H200), with
the gpu profile's Keras backend, torch, on one GPU, offline (``HF_HUB_OFFLINE=1``). Each
measurement runs what the gpu profile runs, with its settings (precision, batch,
augmentation placement, compilation), on random images, each in its own process: a job that
fails or runs out of time is recorded with its error, and the next one still runs. The JSON
is complete after every job.

1. ViT-B/16 fine-tuning at 224 px with the Hugging Face ``Trainer``: notebook 03's gpu
   settings (bf16, SDPA attention, TF32, batch 32, 8 loader workers, crop and flip), random
   weights (the speed does not depend on them); 100 steps timed after 30 of warm-up, in one
   epoch (no loader restart), against the 2,500 images/s target;
2. the from-scratch Keras ViT configurations of notebooks 01 and 02 (mixed_bfloat16,
   augmentation inside the model, their batch sizes); the first epoch left out;
3. EfficientNetB0 as notebook 05 trains it (frozen backbone, bf16, batch 32, 224 px);

then notebook 02's improved configuration and notebook 04's fine-tuning for a few epochs on
a 10-class subset (``--data``, ``.gl/cars10`` from ``make gpu-bundle``), through the same
functions as the notebooks. A job that would start past ``--budget-s`` is skipped and named.
``--cpu`` shrinks every amount so that the whole check runs on a CPU in a few minutes (the
tests run it so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
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


TARGET_VIT_B16 = 2500  # images/s, ViT-B/16 fine-tuning on one H200 (README)


def step_clock(warmup: int, timed: int):
    """A Trainer callback timing ``timed`` steps after ``warmup`` steps, waiting for the GPU
    at both ends."""
    from transformers import TrainerCallback

    def now():
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    class StepClock(TrainerCallback):
        seconds = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                self._t0 = now()
            elif state.global_step == warmup + timed:
                self.seconds = now() - self._t0

    return StepClock()


def vit_b16(cpu: bool) -> dict:
    """ViT-B/16 fine-tuning throughput with the project's Trainer code, at notebook 03's gpu
    settings: ``timed`` steps after ``warmup`` ones, in one epoch."""
    from transformers import AutoModelForImageClassification, ViTConfig

    from common.models import hf_classifier
    from common.training import hf_trainer

    run = loading.load("03_vit_finetune", "gpu").runs[0]
    size, batch = (32, 8) if cpu else (224, run.batch_size)
    warmup, timed = (2, 3) if cpu else (30, 100)
    vit = ViTConfig(image_size=size, patch_size=16 if not cpu else 8, num_labels=196,
                    **({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                        "intermediate_size": 128} if cpu else {}))
    model = AutoModelForImageClassification.from_config(vit, attn_implementation="sdpa")
    clf = hf_classifier.Classifier(model, hf_classifier.simple_processor(size), weights={},
                                   checkpoint="random")
    x, y = images(batch * (warmup + timed), size, 196)
    settings = schema.HfTraining.model_validate({
        **run.model_dump(include=set(schema.HfTraining.model_fields)), "epochs": 1,
        "batch_size": batch, "train_eval_images": batch,
        **({"dataloader_workers": 0} if cpu else {})})
    clock = step_clock(warmup, timed)
    fit = hf_trainer.fine_tune(clf, x, y, x[:batch], y[:batch], settings, seed=0,
                               callbacks=[clock])
    rate = batch * timed / clock.seconds
    return {"images_per_second": round(rate, 1), "target": TARGET_VIT_B16,
            "target_met": bool(rate >= TARGET_VIT_B16), "image_size": size,
            "batch_size": batch, "warmup_steps": warmup, "timed_steps": timed,
            "rate": f"{timed} steps after {warmup} of warm-up, one epoch",
            "settings": {k: getattr(settings, k) for k in (
                "mixed_precision", "attention", "tf32", "dataloader_workers", "crop_scale")},
            "trained_on": fit["trained_on"]}


def keras_configs(cpu: bool, steps: int, emit) -> list[dict]:
    """The gpu profile's from-scratch ViT configurations (01, 02), on random images, each
    handed to ``emit`` as soon as it is measured."""
    from common.models import vit
    from common.training import keras_fit

    out = []
    for nb in ("01_vit_scratch", "02_vit_scratch_10classes"):
        p = loading.load(nb, "gpu")
        policy = runtime.set_keras_precision(p.mixed_precision and not cpu)
        for cfg in p.runs:
            net = cfg.network
            size = net.image_size
            batch = 8 if cpu else cfg.batch_size
            if cpu:
                size = 32 if not net.stem_channels else 2 ** len(net.stem_channels) * 2
                small = {**net.model_dump(), "image_size": size, "transformer_layers": 1,
                         "patch_size": net.patch_size if net.stem_channels else 8}
                cfg = schema.KerasVitRun.model_validate({**cfg.model_dump(), "network": small})
            if cpu:  # torch.compile takes minutes a model on a CPU (the dry run's rule)
                cfg = cfg.model_copy(update={"jit_compile": False})
            x, y = images(batch * steps, size, 196)
            model = vit.build_vit(cfg.network, cfg.augmentation, 196, name=cfg.name)
            keras_fit.compile_classifier(model,
                                         keras_fit.make_optimizer(cfg.optimiser, 3, steps),
                                         jit_compile=cfg.jit_compile)
            trained = keras_fit.train(
                model, x, y, x[:batch], y[:batch], epochs=3, batch_size=batch, verbose=0,
                checkpoint_path=SCRATCH / "gpu_check.keras",
                augmentation=cfg.augmentation.pipeline_level)
            out.append({"notebook": nb, "run": cfg.name, "image_size": size,
                        "batch_size": batch, "precision": policy,
                        "augment_in_model": cfg.augmentation.in_model,
                        "jit_compile": cfg.jit_compile,
                        "images_per_second": trained["train_images_per_second"],
                        "rate": "epochs 2-3 (the first, tracing, left out)",
                        "trained_on": trained["trained_on"]})
            emit(out)
    runtime.set_keras_precision(False)
    return out


def efficientnet(cpu: bool, steps: int) -> dict:
    """EfficientNetB0 as notebook 05 trains it: frozen backbone, the profile's precision,
    batch, image size, augmentation placement and compilation (not compiled with --cpu)."""
    from common.models import efficientnet as effnet
    from common.training import keras_fit

    p = loading.load("05_efficientnet", "gpu")
    size, batch = (32, 8) if cpu else (p.image_size, p.batch_size)
    jit = False if cpu else p.jit_compile
    policy = runtime.set_keras_precision(p.mixed_precision and not cpu)
    x, y = images(batch * steps, size, 196)
    model, _ = effnet.build(196, size, weights=str(Path("/nonexistent.h5")),
                            augment_in_model=p.augment_in_model)
    keras_fit.static_shapes(jit)
    model.compile(optimizer="adam", loss=keras_loss(), metrics=["accuracy"], jit_compile=jit)
    trained = keras_fit.train(model, x, y, x[:batch], y[:batch], epochs=3,
                              batch_size=batch, verbose=0,
                              checkpoint_path=SCRATCH / "gpu_check_effnet.keras",
                              augmentation="none" if p.augment_in_model else "efficientnet")
    runtime.set_keras_precision(False)
    return {"image_size": size, "batch_size": batch, "precision": policy,
            "augment_in_model": p.augment_in_model, "jit_compile": jit,
            "stage": "frozen backbone", "images_per_second": trained["train_images_per_second"],
            "rate": "epochs 2-3 (the first, tracing, left out)",
            "trained_on": trained["trained_on"]}


def keras_loss():
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def notebooks_02_04(data: Path, cpu: bool, epochs: int) -> dict:
    """02's improved run and 04's fine-tuning at their gpu settings, a few epochs."""
    from common.data.task import load_task
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
    out["02_improved"] = {"train_seconds": record.train_seconds,
                          "train_images_per_second": record.train_images_per_second,
                          "test_accuracy": record.metrics.test_accuracy}
    p04 = loading.load("04_vit_finetune_10classes", "gpu", dry_run=cpu, data_dir=data)
    # with --cpu, at most the dry run's images per split, as notebook 04 takes them
    task = load_task(p04.study, "ten", loading.limits(p04))
    run = schema.HfRun.model_validate({**p04.runs[0].model_dump(), "epochs": epochs})
    # a random stand-in when the pretrained weights are missing (a GPU box without network;
    # the speed does not depend on them): the dry run's rule, without its other amounts
    p04 = p04.model_copy(update={"dry_run": True})
    record, _ = finetune_runs.fit_config(run, task.parts, task.labels, p04,
                                         model_dir=SCRATCH / "gpu_check_04")
    out["04_balanced"] = {"train_seconds": record.train_seconds,
                          "train_images_per_second": record.train_images_per_second,
                          "weights": record.weights.source}
    return out


def merge(out: Path, **values) -> dict:
    """Add ``values`` to the JSON at ``out`` (written whole, then renamed: a complete file
    at every moment); return it."""
    report = json.loads(out.read_text()) if out.is_file() else {}
    report.update(values)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(tmp, out)
    return report


def job(name: str, args) -> object:
    """Run one measurement in this process; its figures go into the JSON."""
    import torch

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    steps = 3 if args.cpu else 20
    if name == "vit_b16_finetune":
        return vit_b16(args.cpu)
    if name == "keras_vit":
        return keras_configs(args.cpu, steps, lambda part: merge(args.out, keras_vit=part))
    if name == "efficientnetb0":
        return efficientnet(args.cpu, steps)
    return notebooks_02_04(args.data, args.cpu, 1 if args.cpu else 5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="tiny amounts, for a CPU")
    parser.add_argument("--data", type=Path, help="a Stanford Cars folder (or 10-class subset)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="start no job past this many seconds (the box allows 540)")
    parser.add_argument("--job", choices=JOBS, help="run this one measurement only")
    args = parser.parse_args(argv)
    if args.job:
        merge(args.out, **{args.job: job(args.job, args)})
        return 0
    import torch

    args.out.unlink(missing_ok=True)  # no figure of an earlier check left in this one
    merge(args.out, device=device_name(), cpu_mode=args.cpu, torch=torch.__version__,
          keras_backend=os.environ["KERAS_BACKEND"], target_vit_b16=TARGET_VIT_B16,
          failed={}, skipped=[], seconds=0)
    started = time.time()
    passed = list(argv if argv is not None else sys.argv[1:])
    for name in [j for j in JOBS if args.data or j != "notebooks"]:
        left = args.budget_s - (time.time() - started)
        if left <= 0:
            merge(args.out, skipped=json.loads(args.out.read_text())["skipped"]
                  + [f"{name}: past the {args.budget_s:g} s budget"])
            continue
        t0 = time.time()
        try:
            proc = subprocess.run([sys.executable, __file__, *passed, "--job", name],
                                  stderr=subprocess.PIPE, text=True, timeout=left + 60)
            error = None if proc.returncode == 0 else (
                f"exit {proc.returncode}: "
                + (proc.stderr.strip().splitlines() or ["no message"])[-1])
            if proc.returncode:
                sys.stderr.write(proc.stderr[-4000:])
        except subprocess.TimeoutExpired:
            error = f"still running after {left + 60:.0f} s, stopped"
        report = json.loads(args.out.read_text())
        if error:
            report["failed"][name] = error
        merge(args.out, failed=report["failed"], seconds=round(time.time() - started, 1))
        shown = error or json.dumps(report.get(name), default=str)
        print(f"{name}: {shown} ({time.time() - t0:.0f} s)", flush=True)
    report = json.loads(args.out.read_text())
    vit = report.get("vit_b16_finetune")
    if vit:
        print(f"ViT-B/16 fine-tuning: {vit['images_per_second']:,.0f} images/s on "
              f"{report['device']}, target {TARGET_VIT_B16:,}: "
              f"{'met' if vit['target_met'] else 'NOT met'}")
    print(f"written {args.out}" + (f"; failed: {', '.join(report['failed'])}"
                                   if report["failed"] else ""))
    return 1 if report["failed"] else 0


# the slowest last (keras_vit compiles seven networks); the 10-class notebooks with --data only
JOBS = ("vit_b16_finetune", "efficientnetb0", "notebooks", "keras_vit")

if __name__ == "__main__":
    sys.exit(main())
