"""Which GPUs each framework sees, and the refusal of a gpu-profile run that would train on
the CPU.

TensorFlow and torch find CUDA each in its own way: a box where ``torch.cuda`` works can
still have a TensorFlow without its CUDA libraries (plain ``pip install tensorflow``), which
would train on the CPU for days. So each framework is asked separately (:func:`gpus`), and
:func:`require_gpus` stops a real gpu-profile run, before any training, with one line that
says what to install, and which NVIDIA driver it found when the driver is the cause. Nothing
here imports a framework before a function needs it.

Nothing here initialises CUDA in the calling process: torch's GPUs are counted with
``torch.cuda.device_count()`` (NVML; this module sets ``PYTORCH_NVML_BASED_CUDA_CHECK`` on
import, so that ``torch.cuda.is_available()`` asks NVML too) and named by ``nvidia-smi``.
A notebook kernel that initialised CUDA could no longer fork the fine-tuning processes of
:func:`common.training.hf_trainer.fine_tune_processes` (accelerate's
``notebook_launcher``): every child would fail with "Cannot re-initialize CUDA in forked
subprocess".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys

# torch.cuda.is_available() asks NVML instead of initialising the CUDA driver: a notebook
# kernel that checks for GPUs can still fork its fine-tuning processes (accelerate's
# notebook_launcher; see the module's docstring).
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
# Kernels compiled at first use from PTX (a GPU newer than a library's binaries) are kept on
# disk for the next process, instead of the driver's default 256 MiB cache that they overflow.
os.environ.setdefault("CUDA_CACHE_MAXSIZE", str(4 * 2 ** 30))

FRAMEWORKS = ("tensorflow", "torch")
SKIP = "VIT_CARS_SKIP_GPU_CHECK"  # tests only: reach what comes after the check without a GPU

# the command that gives a CUDA box the GPU lock (README)
INSTALL = ("conda create -y -n vit-cars-poc python=3.11 pip && conda activate vit-cars-poc "
           "&& make setup VENV=$CONDA_PREFIX, then make run PROFILE=gpu VENV=$CONDA_PREFIX")


# The oldest Linux NVIDIA driver each CUDA major runs on (CUDA's release notes, table 3:
# 12.0 GA needs >= 525.60.13, 13.0 GA >= 580.65.06).
DRIVER_FOR_CUDA = {12: "525.60.13", 13: "580.65.06"}


class NoGpu(RuntimeError):
    """A framework that a gpu-profile notebook trains with sees no GPU (one line)."""


def nvidia_smi(*fields: str) -> list[list[str]]:
    """One row per GPU of ``nvidia-smi --query-gpu=FIELDS`` (all the box's GPUs, whatever
    ``CUDA_VISIBLE_DEVICES`` says); [] without nvidia-smi or when it fails (no driver)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [[cell.strip() for cell in line.split(",")] for line in out.splitlines()
            if line.strip()]


def _visible(names: list[str], count: int) -> list[str]:
    """The ``count`` GPUs of ``names`` (nvidia-smi's order) that CUDA_VISIBLE_DEVICES leaves
    visible; placeholders when they cannot be matched (UUIDs, a missing nvidia-smi)."""
    wanted = os.environ.get("CUDA_VISIBLE_DEVICES")
    if wanted is not None:
        picks = [w.strip() for w in wanted.split(",") if w.strip()]
        if all(p.isdigit() and int(p) < len(names) for p in picks):
            names = [names[int(p)] for p in picks]
    if len(names) < count:
        return [f"cuda:{i}" for i in range(count)]
    return names[:count]


def gpus(framework: str) -> list[str]:
    """The GPUs ``framework`` ("tensorflow" or "torch") can compute on, by name; [] when it
    sees none (or is not installed). Initialises no CUDA context (module docstring)."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")
    if framework == "torch":
        try:
            import torch
        except ImportError:
            return []
        count = torch.cuda.device_count()
        if not count:
            return []
        return _visible([row[0] for row in nvidia_smi("name")], count)
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


def driver() -> str | None:
    """The NVIDIA driver's version (nvidia-smi), None when none is found."""
    rows = nvidia_smi("driver_version")
    return rows[0][0] if rows else None


def _why_torch_sees_none() -> str:
    """What keeps torch from the GPU, in words: a CPU build, no driver, or a driver older
    than the one torch's CUDA needs."""
    from importlib import metadata

    from packaging.version import InvalidVersion, Version

    try:
        import torch
    except ImportError:
        return "torch is not installed"
    cuda = torch.version.cuda
    if not cuda:
        return f"torch {metadata.version('torch')} is a CPU build"
    found = driver()
    if found is None:
        return "no NVIDIA driver answers (nvidia-smi)"
    needed = DRIVER_FOR_CUDA.get(int(cuda.split(".")[0]))
    try:
        old = needed is not None and Version(found) < Version(needed)
    except InvalidVersion:
        old = False
    if old:
        return (f"NVIDIA driver {found} found, but torch {metadata.version('torch')} is built "
                f"for CUDA {cuda}, which needs driver >= {needed}: update the driver, or use "
                f"a box whose driver is >= {needed}")
    return f"NVIDIA driver {found} found, torch built for CUDA {cuda}"


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
            why = f" ({_why_torch_sees_none()})" if framework == "torch" else ""
            raise NoGpu(
                f"profile gpu: {notebooks} train with {framework}, but {_version(framework)} "
                f"in {sys.executable} sees no GPU{why}; on a CUDA box install the GPU lock: "
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
