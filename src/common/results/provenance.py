"""Where a run ran: package versions, the device, the commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Annotated

from pydantic import BaseModel, Field

from common.core import accelerators, paths
from common.results import lockfile

PACKAGES = ("keras", "tensorflow", "torch", "transformers")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def device_description() -> str:
    """GPU names from nvidia-smi when there are GPUs, else the CPU core count."""
    gpus = [row[0] for row in accelerators.nvidia_smi("name")]
    if gpus:
        return f"{len(gpus)} GPU: " + ", ".join(gpus)
    return f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def _gpu_count() -> int:
    """The CUDA devices torch sees (0 without torch or without a GPU)."""
    torch = sys.modules.get("torch")
    try:
        return int(torch.cuda.device_count()) if torch else 0
    except Exception:  # a broken CUDA setup: no usable GPU
        return 0


def lock() -> dict | None:
    """The lock of exact versions nearest to this environment (the CPU or the GPU lock of
    ``requirements/``, whichever it departs from least): its file, SHA-256, package count and
    the installed packages that differ from it (:func:`common.results.lockfile.lock_info`).
    None when the checkout has no lock."""
    infos = [lockfile.lock_info(path) for path in (lockfile.CPU_LOCK, lockfile.GPU_LOCK)
             if (paths.ROOT / path).is_file()]
    return min(infos, key=lambda info: len(info["mismatches"])) if infos else None


class Machine(BaseModel):
    """The device a notebook ran on: its description, its CPU cores and the GPUs torch saw
    (None where not recorded)."""

    device: str
    cores: Annotated[int, Field(strict=True, ge=1)] | None = None
    gpus: Annotated[int, Field(strict=True, ge=0)] | None = None


def hardware() -> Machine:
    """The device a notebook runs on: its description, the CPU cores and the GPUs torch sees
    (when torch is loaded)."""
    return Machine(device=device_description(), cores=os.cpu_count(), gpus=_gpu_count())


def environment() -> dict:
    """Versions, the lock they should match, the device (its description, the CPU cores and
    the GPUs torch sees, when torch is loaded) and, when Keras is loaded, the Keras backend
    the notebook ran on."""
    keras = sys.modules.get("keras")
    return {"python": platform.python_version(),
            **{p: _version(p) for p in PACKAGES},
            "lock": lock(),
            "keras_backend": keras.backend.backend() if keras else None,
            **hardware().model_dump()}


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=paths.ROOT,
                              capture_output=True, text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
