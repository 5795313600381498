"""The switches of the process a notebook runs in: Keras backend, torch threads, precision.

Call :func:`use_keras_backend` before anything imports Keras (it sets ``KERAS_BACKEND``,
which Keras reads once, on its first import); this module itself imports neither Keras
nor torch until a function needs them.
"""

from __future__ import annotations

import os
import sys

from common.core import accelerators

# torch's OpenMP threads spin while they wait for each other; on a small CPU shared with
# other processes, that made training 5-40 times slower (measured on 2 shared cores).
# Passive waiting costs little otherwise. It only takes effect if set before torch starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

KERAS_BACKENDS = ("tensorflow", "torch")


def use_keras_backend(name: str) -> str:
    """Make Keras run on ``name`` ("tensorflow" or "torch"); return it.

    Before Keras is imported this sets ``KERAS_BACKEND``; afterwards it only checks, and
    fails clearly when the kernel already runs another backend."""
    if name not in KERAS_BACKENDS:
        raise ValueError(f"keras_backend must be one of {KERAS_BACKENDS}, got {name!r}")
    keras = sys.modules.get("keras")
    if keras is None:
        os.environ["KERAS_BACKEND"] = name
        return name
    if keras.backend.backend() != name:
        raise RuntimeError(
            f"keras_backend is {name!r} but Keras already runs on {keras.backend.backend()!r} "
            f"in this kernel: restart the kernel, or set keras_backend to "
            f"{keras.backend.backend()!r}")
    return name


def set_torch_threads(n: int | None) -> int | None:
    """Use ``n`` torch intra-op threads (None: torch's default, one per core); return the
    number in use (None when torch is not loaded and nothing was asked).

    On a small CPU, one thread can beat two: with Keras augmenting images on a tf.data
    thread, torch on both cores of a 2-core machine fights it and some epochs take twice as
    long (96 px hybrid, 424 to 943 ms a step with two threads, 253 to 369 with one); a tiny
    Hugging Face model is faster on one thread too."""
    if n is None:
        torch = sys.modules.get("torch")
        return torch.get_num_threads() if torch is not None else None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"torch_threads must be a positive integer or null, got {n!r}")
    import torch

    torch.set_num_threads(n)
    return torch.get_num_threads()


def set_keras_precision(mixed: bool) -> str:
    """Keras' global policy: 'mixed_bfloat16' (bf16 compute, float32 weights, no loss
    scaling) if ``mixed``, else 'float32'."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed else "float32")
    return keras.mixed_precision.global_policy().name


def training_processes(processes: int | None, batch_sizes=(), gpus: int | None = None) -> int:
    """How many data-parallel processes fine-tune: ``processes`` when given, else one per
    visible GPU (``gpus``, default torch's count, which initialises no CUDA;
    ``CUDA_VISIBLE_DEVICES`` narrows them), else 1. Each process takes an equal share of
    every global batch of ``batch_sizes``: by default, the most GPUs that divide them all (6
    of 8 GPUs for batches of 48); a ``processes`` that does not divide one is refused
    (ValueError). One process that sees several GPUs is refused too (ValueError): the
    Hugging Face ``Trainer`` would wrap the model in ``nn.DataParallel`` and each step would
    take the batch once per GPU."""
    batch_sizes = [int(b) for b in batch_sizes]
    if processes is not None:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"processes must be a positive integer or null, got {processes!r}")
        uneven = [b for b in batch_sizes if b % processes]
        if uneven:
            raise ValueError(f"processes {processes} does not divide batch_size {uneven[0]}: "
                             f"each process takes an equal share of the global batch; use a "
                             f"divisor of it")
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    n = processes or next(n for n in range(max(1, gpus), 0, -1)
                          if all(b % n == 0 for b in batch_sizes))
    if n == 1 and gpus > 1:
        raise ValueError(
            f"one fine-tuning process would see {gpus} GPUs: the Trainer would wrap the model "
            f"in nn.DataParallel and each step would take {gpus} times the batch; set "
            f"processes: null (one process per GPU, with batch sizes they divide), or pin one "
            f"GPU with CUDA_VISIBLE_DEVICES=0 (make -j run GPUS=\"0 1 ...\" pins one per "
            f"notebook)")
    return n


def prepare_keras(params) -> str:
    """A Keras notebook's switches from its parameters (:func:`common.config.load`): the
    backend (call this before importing Keras), TensorFlow's GPU memory grown as needed,
    torch threads and precision. Returns the backend."""
    backend = use_keras_backend(params.keras_backend)
    if backend == "tensorflow":
        accelerators.grow_tensorflow_memory()
    set_torch_threads(params.torch_threads)
    set_keras_precision(params.mixed_precision)
    return backend
