"""Training throughput of the keras.io ViT on random data (images/s).

    PYTHONPATH=src python benchmarks/bench_vit.py --image-size 72 --patch-size 8 \
        --batch-size 64 --steps 20

Variants: XLA off/on x augmentation none / "standard" inside the model /
"standard" in the input pipeline (``keras_fit.make_dataset``, as ``vit_runs.fit_config``
trains: tf.data with Keras' layers on tensorflow, the kornia ``Batches`` on torch). On the
torch backend (``KERAS_BACKEND=torch``) the XLA variants are left out, unless
``--torch-compile`` keeps them: ``jit_compile=True`` is then ``torch.compile`` (inductor,
static shapes). Keras marks
RandomRotation and RandomZoom ``supports_jit = False``, so ``jit_compile=True``
on a model that contains them silently falls back to no XLA (that variant is
therefore not run); the "pipeline" variants augment in the input pipeline
instead. Each variant is built and warmed up (``--warmup`` steps: tracing and
XLA compilation); then the variants run in turn (``--steps`` steps each) for
``--repeats`` rounds, so that background load on a shared machine hits all
variants alike. images/s = batch size / median step time.
``--busy-core``: a second process keeps one core busy while the variants are timed (another
job on a 2-core machine). ``--flops``: also count the floating-point operations of one
training step (forward and backward, ``torch.utils.flop_counter``; torch backend), per image.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from common.config.schema import KerasVitRun  # noqa: E402
from common.models import vit  # noqa: E402
from common.training import keras_fit  # noqa: E402

VARIANTS = {  # name: (jit_compile, augmentation in the model, augmentation in tf.data)
    "nojit_aug_model": (False, "standard", "none"),
    "nojit_noaug": (False, "none", "none"),
    "jit_noaug": (True, "none", "none"),
    "nojit_aug_pipeline": (False, "none", "standard"),
    "jit_aug_pipeline": (True, "none", "standard"),
}


def spin():
    """Keep one core busy until terminated."""
    while True:
        pass


def make_data(args):
    rng = np.random.default_rng(0)
    n = args.batch_size * max(4, args.steps, args.warmup)
    x = rng.integers(0, 256, (n, args.image_size, args.image_size, 3), dtype=np.uint8)
    y = rng.integers(0, args.num_classes, n).astype("int64")
    return x, y


def dataset(x, y, batch_size, augmentation):
    ds = keras_fit.make_dataset(x, y, batch_size, augmentation=augmentation)
    return ds.repeat() if hasattr(ds, "repeat") else ds  # tf.data, or a PyDataset on torch


class StepTimer(keras.callbacks.Callback):
    """Wall time of each training step (waits for the step's loss)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])
        self.seconds.append(time.perf_counter() - self._t)


def network(args, augmentation: str) -> KerasVitRun:
    """The benchmarked network's settings: ``augmentation`` inside the model unless "none"."""
    stem = [int(c) for c in args.stem_channels.split(",")] if args.stem_channels else None
    return KerasVitRun(
        name="bench",
        network={"image_size": args.image_size, "patch_size": args.patch_size,
                 "stem_channels": stem, "key_dim": args.key_dim,
                 "transformer_layers": 4 if stem else 8,
                 "mlp_head_units": [256] if stem else [2048, 1024]},
        augmentation={"level": "standard" if augmentation == "none" else augmentation,
                      "in_model": augmentation != "none"})


def prepare(args, x, y, jit, aug_in_model, aug_in_pipeline):
    """Build, compile and warm up one variant; return (run ``--steps`` steps, XLA used,
    list of the timed step durations)."""
    keras.utils.set_random_seed(0)
    cfg = network(args, aug_in_model)
    model = vit.build_vit(cfg.network, cfg.augmentation, args.num_classes)
    keras_fit.compile_classifier(model, keras_fit.make_optimizer(cfg.optimiser, 1, args.steps),
                                 jit_compile=jit)
    timer = StepTimer()
    ds = dataset(x, y, args.batch_size, aug_in_pipeline)
    model.fit(ds, steps_per_epoch=args.warmup, epochs=1, verbose=0)

    def run():
        model.fit(ds, steps_per_epoch=args.steps, epochs=1, verbose=0, callbacks=[timer])
    return run, bool(model.jit_compile), timer.seconds


def train_flops(args) -> float:
    """FLOPs of one training step (forward and backward), per image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    cfg = network(args, "none")
    model = vit.build_vit(cfg.network, cfg.augmentation, args.num_classes)
    x = torch.rand(8, args.image_size, args.image_size, 3) * 255
    with FlopCounterMode(display=False) as counter:
        model(x, training=True).sum().backward()
    return counter.get_total_flops() / len(x)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=72)
    p.add_argument("--patch-size", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="timing rounds")
    p.add_argument("--num-classes", type=int, default=196)
    p.add_argument("--stem-channels", default=None,
                   help="comma-separated, e.g. 16,32,64,64: the hybrid ViT of 01/02")
    p.add_argument("--key-dim", type=int, default=None,
                   help="the width of each attention head (01/02's hybrid: 16)")
    p.add_argument("--torch-compile", action="store_true",
                   help="torch backend: keep the jit variants (torch.compile)")
    p.add_argument("--flops", action="store_true",
                   help="torch backend: count a training step's FLOPs per image")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (torch backend only)")
    p.add_argument("--busy-core", action="store_true",
                   help="time the variants while another process keeps one core busy")
    p.add_argument("--only", default=None, help="comma-separated variant names "
                   f"(default: all of {', '.join(VARIANTS)})")
    args = p.parse_args(argv)
    if args.threads and keras.backend.backend() != "torch":
        p.error("--threads sets torch's threads; with KERAS_BACKEND="
                f"{keras.backend.backend()} it would change nothing: leave it out")
    if args.threads:
        from common.core import runtime

        runtime.set_torch_threads(args.threads)

    variants = dict(VARIANTS)
    if (args.torch_compile or args.flops) and keras.backend.backend() != "torch":
        p.error("--torch-compile and --flops are for KERAS_BACKEND=torch")
    if args.torch_compile:
        import torch._dynamo

        # Keras' step sees the same shapes every call: no dynamic-shape recompiles
        torch._dynamo.config.automatic_dynamic_shapes = False
        torch._dynamo.config.cache_size_limit = 64
    elif keras.backend.backend() != "tensorflow":  # XLA variants are tensorflow's
        variants = {k: v for k, v in variants.items() if not v[0]}
    if args.only:
        variants = {k: variants[k] for k in args.only.split(",")}

    x, y = make_data(args)
    print(f"backend={keras.backend.backend()} cpus={os.cpu_count()} "
          f"loadavg={os.getloadavg()[0]:.2f}", flush=True)
    runs, jit_used, steps = {}, {}, {}
    for name, (jit, aug_model, aug_pipe) in variants.items():
        t = time.perf_counter()
        runs[name], jit_used[name], steps[name] = prepare(args, x, y, jit, aug_model, aug_pipe)
        print(f"prepared {name} in {time.perf_counter() - t:.0f}s", flush=True)

    busy = multiprocessing.Process(target=spin, daemon=True) if args.busy_core else None
    if busy:
        busy.start()
    try:
        for _ in range(args.repeats):
            for run in runs.values():
                run()
    finally:
        if busy:
            busy.terminate()
            busy.join()

    results = {"backend": keras.backend.backend(), "image_size": args.image_size,
               "patch_size": args.patch_size, "stem_channels": args.stem_channels,
               "threads": args.threads, "busy_core": args.busy_core,
               "batch_size": args.batch_size,
               "steps": args.steps, "repeats": args.repeats}
    for name, seconds in steps.items():
        results[name] = round(args.batch_size / float(np.median(seconds)), 2)
        print(f"{name:20s} xla={jit_used[name]!s:5s} {results[name]:7.1f} images/s", flush=True)
    if args.flops:
        results["train_mflop_per_image"] = round(train_flops(args) / 1e6, 1)
        print(f"one training step: {results['train_mflop_per_image']} MFLOP an image")
    results["loadavg_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
