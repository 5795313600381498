"""The training step of notebook 01's improved run against this machine's peak: side by side,
in one process, the matmul peak and each training path, as images/s, as a fraction of the
peak, and as a speed-up over the baseline (the path of cf135a4).

    PYTHONPATH=src python benchmarks/bench_train.py            # make bench runs it
    PYTHONPATH=src python benchmarks/bench_train.py --rounds 7 --json bench.json

The recipe is params/cpu/01_vit_scratch.yaml's run improved-hybrid (96 px, the 16-32-64-64
stem, 16-wide heads, batch 128), on random images, Keras on torch. Each path is the training
loop as the notebook runs it: ``keras_fit.Batches`` (the batch taken from the uint8 array,
augmented by kornia, mixed when the recipe mixes) and Keras' ``fit``, timed over
``--steps`` steps; the paths take turns for ``--rounds`` rounds, so that the machine's drift
hits them alike, and each figure is the median round.

- ``baseline (cf135a4)``: Keras' ``BatchNormalization`` in the stem (op by op on torch),
  batches made float in numpy and augmented by kornia's modules in turn
  (``BaselineBatches``), torch's flash attention kernel, two threads;
- then each change in turn, the last being 01's path in the cpu profile: ``+ fused batch norm``
  (``common.models.vit.BatchNorm``), ``+ batches on torch`` (made float on torch, flipped
  and warped in one kernel: ``common.training.batch_augmentation.FlipAffine``, then made
  channels last and mixed in numpy: ``ChannelsLastBatches``), ``+ plain attention``
  (``common.training.keras_fit.attention_kernel``), ``+ mixed bf16`` (Keras'
  mixed_bfloat16 policy, ``mixed_precision: true`` in params/cpu/01: 01's path at
  7bd02c6), ``+ channels-first batches`` (mixed on torch and handed to the model channels
  first in memory: ``keras_fit.Batches``; 01's path at fbf2580), ``+ channels-last stem``
  (the stem's convolutions on channels-last maps, ``common.models.vit.Conv2D``, and the
  attention computed plainly, ``common.models.vit.MultiHeadAttention``);
- ``..., model only``: without augmentation nor mixing, to show what the input pipeline
  costs;
- ``01's path, 1 thread``: what the second core adds.

The recipe's mixing (mixup, CutMix) runs in every path that augments.

The peak is a plain float32 and bfloat16 matmul (2048 x 2048) with one and two threads; a
path's fraction of the peak is its FLOP rate (one training step's FLOPs an image, forward and
backward, counted by ``torch.utils.flop_counter``, times images/s) over the peak at its
thread count. A path's speed-up is the median over the rounds of its rate over the
baseline's in the same round. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

os.environ["KERAS_BACKEND"] = "torch"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.config import loading  # noqa: E402
from common.core import runtime  # noqa: E402
from common.models import vit  # noqa: E402
from common.training import keras_fit, vit_runs  # noqa: E402

CLASSES = 196


def matmul_peak(threads: int, dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` timed (n x n) @ (n x n) products."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def train_mflop_per_image(model) -> float:
    """MFLOP of one training step (forward and backward) an image."""
    from torch.utils.flop_counter import FlopCounterMode

    size = model.input_shape[1]
    x = torch.rand(8, size, size, 3) * 255
    with FlopCounterMode(display=False) as counter:
        model(x, training=True).sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x) / 1e6


@contextmanager
def keras_layers(since: int):
    """Build the network with Keras' own layers where the path predates ours: its
    ``BatchNormalization`` in the stem (``since`` 0, the baseline's), its ``Conv2D`` and
    ``MultiHeadAttention`` (``since`` < 6)."""
    mine = {name: getattr(vit, name) for name in ("BatchNorm", "Conv2D", "MultiHeadAttention")}
    if since < 1:
        vit.BatchNorm = keras.layers.BatchNormalization
    if since < 6:
        vit.Conv2D, vit.MultiHeadAttention = keras.layers.Conv2D, keras.layers.MultiHeadAttention
    try:
        yield
    finally:
        for name, layer in mine.items():
            setattr(vit, name, layer)


def baseline_kornia(level: str):
    """cf135a4's kornia augmentation ("standard" or "strong"): one module per
    transformation, drawn from torch's global generator."""
    import kornia.augmentation as K

    if level == "none":
        return None
    strong = level == "strong"
    steps = [K.RandomHorizontalFlip(p=0.5),
             K.RandomAffine(degrees=0.02 * 360, translate=(0.1, 0.1) if strong else None,
                            scale=(0.8, 1.2, 0.8, 1.2), padding_mode="reflection", p=1.0)]
    if strong:
        steps.append(K.ColorJitter(contrast=0.2, p=1.0))
    return K.AugmentationSequential(*steps)


class BaselineBatches(keras_fit.Batches):
    """The batches of cf135a4: uint8 to float32 in numpy, augmented by kornia's modules in
    turn, brought back to a numpy array."""

    def __init__(self, x, y, batch_size, augmentation="none", **kwargs):
        super().__init__(x, y, batch_size, augmentation=augmentation, **kwargs)
        self.augment = baseline_kornia(augmentation)

    def __getitem__(self, i):
        pick = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        batch = self.x[pick].astype("float32")
        if self.augment is not None:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFF_FFFF)
                images = torch.from_numpy(batch).permute(0, 3, 1, 2) / 255.0
                images = self.augment(images) * 255.0
                batch = images.permute(0, 2, 3, 1).contiguous().numpy()
        if self.mix:
            return keras_fit._mix(batch, self.y[pick],
                                  np.random.default_rng([self.seed, self.epoch, i, 1]), self.mix)
        return batch, self.y[pick]


class ChannelsLastBatches(keras_fit.Batches):
    """The batches of 7bd02c6: made float, warped and flipped on torch as today's, then
    copied channels last and mixed in numpy."""

    def __getitem__(self, i):
        mix, self.mix = self.mix, None
        try:
            images, labels = super().__getitem__(i)
        finally:
            self.mix = mix
        batch = images.contiguous()
        if not mix:
            return batch, labels
        return keras_fit._mix(batch.numpy(), labels,
                              np.random.default_rng([self.seed, self.epoch, i, 1]), mix)


class TrainingPath:
    """One training path: its model, its batches, and one timed round of ``steps`` steps.
    ``since``: how much of 01's path it takes, in the order the changes came
    (0: cf135a4's; 1: the fused batch norm; 2: the batches on torch, one warp; 3: plain
    attention on the CPU; 4: mixed bf16, the cpu profile's 01 at 7bd02c6; 5: channels-first
    batches mixed on torch, 01's at fbf2580; 6: the stem's convolutions on channels-last
    maps and attention computed plainly, today's 01)."""

    def __init__(self, name, cfg, x, y, *, since, threads=2, augment=True):
        self.name, self.threads, self.cfg, self.since = name, threads, cfg, since
        keras.utils.set_random_seed(0)
        pixels = x[:64].reshape(-1, 3).astype("float64")
        stats = (pixels.mean(axis=0), pixels.var(axis=0))
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if since >= 4 else "float32")
        try:
            with keras_layers(since):
                self.model = vit.build_vit(cfg.network, cfg.augmentation, CLASSES, stats)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        vit_runs.compile_model(self.model, cfg, vit_runs.Arrays(x, y, x[:0], y[:0]))
        kind = BaselineBatches if since < 2 else ChannelsLastBatches if since < 5 else \
            keras_fit.Batches
        aug = cfg.augmentation
        self.batches = kind(
            x, y, cfg.batch_size, shuffle=True, augmentation=aug.level if augment
            else "none", mix={"num_classes": CLASSES, "mixup_alpha": aug.mixup_alpha,
                              "cutmix_alpha": aug.cutmix_alpha}
            if augment and aug.mixes else None)
        self.rates: list[float] = []

    def run(self, steps: int, record: bool = True) -> None:
        torch.set_num_threads(self.threads)
        kernel = keras_fit.attention_kernel(self.model) if self.since >= 3 else nullcontext()
        t = time.perf_counter()
        with kernel:
            self.model.fit(self.batches, epochs=1, steps_per_epoch=steps, verbose=0)
        if record:
            self.rates.append(steps * self.cfg.batch_size / (time.perf_counter() - t))

    @property
    def images_per_second(self) -> float:
        return statistics.median(self.rates)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="training steps a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--run", default="improved-hybrid", help="the run of "
                        "params/cpu/01_vit_scratch.yaml whose recipe is timed")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    params = loading.load("01_vit_scratch", "cpu", data_dir=Path("."))
    cfg = next((r for r in params.runs if r.name == args.run), None)
    if cfg is None:
        parser.error(f"params/cpu/01_vit_scratch.yaml has no run {args.run!r}")
    runtime.set_torch_threads(2)
    print(f"machine: {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}; recipe {cfg.name}: "
          f"{cfg.network.image_size} px, batch {cfg.batch_size}, augmentation "
          f"{cfg.augmentation.level}",
          flush=True)
    peak = {(t, d): matmul_peak(t, dtype) for t in (1, 2)
            for d, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    for (t, d), gflops in peak.items():
        print(f"matmul peak {d:8s} {t} thread{'s' if t > 1 else ' '}: {gflops:6.0f} GFLOP/s")

    rng = np.random.default_rng(0)
    n = cfg.batch_size * (args.steps + 2)
    size = cfg.network.image_size
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, CLASSES, n)
    paths = [TrainingPath("baseline (cf135a4)", cfg, x, y, since=0),
             TrainingPath("baseline, model only", cfg, x, y, since=0, augment=False),
             TrainingPath("+ fused batch norm", cfg, x, y, since=1),
             TrainingPath("+ batches on torch", cfg, x, y, since=2),
             TrainingPath("+ plain attention", cfg, x, y, since=3),
             TrainingPath("+ mixed bf16 (7bd02c6)", cfg, x, y, since=4),
             TrainingPath("+ channels-first (fbf2580)", cfg, x, y, since=5),
             TrainingPath("fbf2580's, model only", cfg, x, y, since=5, augment=False),
             TrainingPath("+ channels-last stem = 01's", cfg, x, y, since=6),
             TrainingPath("01's path, model only", cfg, x, y, since=6, augment=False),
             TrainingPath("01's path, 1 thread", cfg, x, y, since=6, threads=1)]
    mflop = train_mflop_per_image(paths[3].model)
    for p in paths:  # warm-up: the first steps allocate and pick kernels
        p.run(2, record=False)
    for _ in range(args.rounds):
        for p in paths:
            p.run(args.steps)

    base = paths[0]
    out = {"mflop_per_image": round(mflop, 1), "loadavg_end": round(os.getloadavg()[0], 2),
           "peak_gflops": {f"{d}_{t}t": round(g, 1) for (t, d), g in peak.items()},
           "paths": {}}
    print(f"one training step: {mflop:.1f} MFLOP an image")
    print(f"{'path':30s} {'images/s':>9s} {'GFLOP/s':>8s} {'of f32 peak':>12s} "
          f"{'of bf16 peak':>13s} {'speed-up':>9s}")
    for p in paths:
        rate = p.images_per_second
        gflops = rate * mflop / 1e3
        f32, bf16 = gflops / peak[(p.threads, "float32")], gflops / peak[(p.threads, "bfloat16")]
        # the speed-up of each round over the baseline's in the same round, the median of
        # them: the machine's drift between rounds cancels out
        speed_up = statistics.median(r / b for r, b in zip(p.rates, base.rates))
        print(f"{p.name:30s} {rate:9.0f} {gflops:8.1f} {f32:12.0%} {bf16:13.0%} "
              f"{speed_up:8.2f}x")
        out["paths"][p.name] = {"images_per_second": round(rate, 1), "threads": p.threads,
                                "fraction_of_f32_peak": round(f32, 3),
                                "fraction_of_bf16_peak": round(bf16, 3),
                                "speed_up": round(speed_up, 2),
                                "rounds": [round(r, 1) for r in p.rates]}
    line = json.dumps(out)
    if args.json:
        args.json.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
