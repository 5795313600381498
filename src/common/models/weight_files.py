"""Pretrained weights on disk: the ``weights/`` folder that ``make weights`` fills, and the
stand-ins of a dry run.

Its command line is ``python -m common weights download``.

``weights/huggingface/<hub id>/`` holds a Hugging Face checkpoint (``snapshot_download``),
``weights/keras/efficientnetb0_notop.h5`` the Keras ImageNet file of EfficientNetB0. The
notebooks look there first, then on the hub (:func:`hf_folder`, :func:`keras_file`).

A dry run that cannot have the real weights uses stand-ins: random weights of the same
architecture, in the same file format (``save_pretrained``; Keras' HDF5 file),
made by :func:`common.models.hf_classifier.make_stand_in` and
:func:`common.models.efficientnet.make_stand_in` in
``weights/stand-ins/`` and loaded through the same code as the real ones.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from common.config.loading import load
from common.core import paths

EFFICIENTNET_FILE = "efficientnetb0_notop.h5"
HF_PATTERNS = ["*.json", "*.safetensors", "*.txt"]


class WeightsError(RuntimeError):
    """Weights that cannot be downloaded; the message says what to do."""


def _folder_name(checkpoint: str) -> str:
    return checkpoint.replace("/", "--")


def hf_folder(checkpoint: str) -> Path | None:
    """The ``weights/`` copy of a hub checkpoint, when it holds config and safetensors."""
    folder = paths.weights_dir() / "huggingface" / _folder_name(checkpoint)
    if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return folder
    return None


def keras_file(name: str = EFFICIENTNET_FILE) -> Path | None:
    """The ``weights/`` copy of a Keras applications weights file, when it is there."""
    path = paths.weights_dir() / "keras" / name
    return path if path.is_file() else None


def gpu_checkpoints() -> list[str]:
    """The Hugging Face checkpoints of the gpu profile's fine-tuning notebooks."""
    return sorted({load(nb, "gpu").checkpoint
                   for nb in ("03_vit_finetune", "04_vit_finetune_10classes")})


def download(timeout: float = 10.0) -> list[Path]:
    """Download every pretrained file of the gpu profile into ``weights/``. Fails at once,
    with what to do, when the hub cannot be reached."""
    from huggingface_hub import HfApi, snapshot_download

    advice = ("run `make weights` on a machine with network access, then copy its weights/ "
              f"folder to {paths.weights_dir()} on this one")
    checkpoints = gpu_checkpoints()
    try:
        HfApi().model_info(checkpoints[0], timeout=timeout)
    except Exception as exc:  # network errors differ between hub versions
        raise WeightsError(f"cannot reach the Hugging Face hub ({type(exc).__name__}): "
                           f"{advice}") from exc
    out = []
    for checkpoint in checkpoints:
        target = paths.weights_dir() / "huggingface" / _folder_name(checkpoint)
        snapshot_download(checkpoint, local_dir=target, allow_patterns=HF_PATTERNS)
        out.append(target)
    import keras

    # Keras downloads (and checks the hash of) the ImageNet file into its cache
    keras.applications.EfficientNetB0(include_top=False, weights="imagenet")
    fetched = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models" \
        / EFFICIENTNET_FILE
    target = paths.weights_dir() / "keras" / EFFICIENTNET_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fetched, target)
    return [*out, target]


def stand_in_path(name: str) -> Path:
    """Where a dry run's stand-in for ``name`` (a hub id or a file name) is kept."""
    return paths.weights_dir() / "stand-ins" / _folder_name(name)
