"""Which GPUs each framework sees, and the refusal of a gpu-profile run that would train on
the CPU.

TensorFlow and torch find CUDA each in its own way: a box where ``torch.cuda`` works can
still have a TensorFlow without its CUDA libraries (plain ``pip install tensorflow``), which
would train 01, 02 and 05 on the CPU for days. So each framework is asked separately
(:func:`gpus`), and :func:`require_gpus` stops a real gpu-profile run, before any training,
with one line that says what to install. Nothing here imports a framework before a function
needs it.
"""

from __future__ import annotations

import contextlib
import os
import sys

FRAMEWORKS = ("tensorflow", "torch")
SKIP = "VIT_CARS_SKIP_GPU_CHECK"  # tests only: reach what comes after the check without a GPU

# the command that gives a CUDA box both frameworks with their CUDA libraries (README)
INSTALL = ("conda create -y -n vit-cars-poc python=3.11 pip && conda activate vit-cars-poc "
           "&& make setup VENV=$CONDA_PREFIX, then make run PROFILE=gpu VENV=$CONDA_PREFIX")


class NoGpu(RuntimeError):
    """A framework that a gpu-profile notebook trains with sees no GPU (one line)."""


def gpus(framework: str) -> list[str]:
    """The GPUs ``framework`` ("tensorflow" or "torch") can compute on, by name; [] when it
    sees none (or is not installed)."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")
    if framework == "torch":
        try:
            import torch
        except ImportError:
            return []
        if not torch.cuda.is_available():
            return []
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        import tensorflow as tf
    except ImportError:
        return []
    out = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            name = tf.config.experimental.get_device_details(device).get("device_name")
        except (RuntimeError, ValueError):
            name = None
        out.append(name or device.name)
    return out


def _version(framework: str) -> str:
    from importlib import metadata

    try:
        return f"{framework} {metadata.version(framework)}"
    except metadata.PackageNotFoundError:
        return f"{framework} (not installed)"


@contextlib.contextmanager
def _quiet_stderr(quiet: bool):
    """Nothing written to the process' stderr (file descriptor 2, where TensorFlow's C++
    start-up logs go) inside the block, when ``quiet``."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def require_gpus(uses: dict[str, str], quiet: bool = False) -> dict[str, list[str]]:
    """Check that every framework of ``uses`` (framework -> the notebooks that train with
    it, in words) sees a GPU; return the GPUs of each. Raises :class:`NoGpu`, one line
    naming the notebooks, the framework and the Python that lacks it, and what to install or
    set. ``quiet``: TensorFlow's start-up logs are not shown. ``VIT_CARS_SKIP_GPU_CHECK=1``
    skips the check (returns {}): only for the tests that reach the gpu profile's other
    refusals (missing weights) on a machine without GPU."""
    if os.environ.get(SKIP) == "1":
        return {}
    seen = {}
    for framework, notebooks in uses.items():
        with _quiet_stderr(quiet):
            seen[framework] = gpus(framework)
        if not seen[framework]:
            raise NoGpu(
                f"profile gpu: {notebooks} train with {framework}, but {_version(framework)} "
                f"in {sys.executable} sees no GPU; on a CUDA box install the GPU lock: "
                f"{INSTALL} (or DRY_RUN=1 to try the profile without a GPU)")
    return seen


def grow_tensorflow_memory() -> None:
    """Let TensorFlow take GPU memory as it needs it instead of reserving nearly all of it
    (two notebooks sharing a GPU under ``make -j``). Set before TensorFlow starts; once it
    has, set on each GPU it has not initialised yet."""
    os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return
    for device in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(device, True)
        except RuntimeError:  # already initialised: the environment variable did it
            pass


def describe(device) -> str:
    """A readable device: a torch device or a TensorFlow device string, with the GPU's name
    ("cuda:0 (NVIDIA H200)", "GPU:0 (NVIDIA H200)", "cpu")."""
    text = str(device)
    if "cuda" in text:
        import torch

        index = getattr(device, "index", None) or 0
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if "GPU" in text.upper():
        tail = text.upper().rsplit("GPU:", 1)[-1]
        index = int(tail) if tail.isdigit() else 0
        names = gpus("tensorflow")
        name = names[index] if index < len(names) else "GPU"
        return f"GPU:{index} ({name})"
    return "cpu"
