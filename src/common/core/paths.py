"""Every project path, in one place.

Environment variables override the defaults so that a GPU box, CI or a test can point
the notebooks elsewhere without editing them:

- ``CARS_DATA_DIR``: the Stanford Cars folder (default ``data/stanford_cars``);
- ``VIT_CARS_CACHE``: where decoded image arrays are cached (default ``cache/``);
- ``VIT_CARS_OUTPUT``: the folder holding ``results/``, ``models/`` and ``runs/``
  (default: the project root);
- ``VIT_CARS_WEIGHTS``: pretrained weights on disk (default ``weights/``).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SHARED_DATA = ROOT.parent / "shared" / "stanford_cars"


def data_dir() -> Path:
    """The Stanford Cars folder: ``$CARS_DATA_DIR`` or ``data/stanford_cars``."""
    return Path(os.environ.get("CARS_DATA_DIR") or ROOT / "data" / "stanford_cars")


def cache_dir() -> Path:
    return Path(os.environ.get("VIT_CARS_CACHE") or ROOT / "cache")


def weights_dir() -> Path:
    """Pretrained weights on disk: ``$VIT_CARS_WEIGHTS`` or ``weights/`` (``make weights``)."""
    return Path(os.environ.get("VIT_CARS_WEIGHTS") or ROOT / "weights")


def output_root() -> Path:
    return Path(os.environ.get("VIT_CARS_OUTPUT") or ROOT)


def final_output_root() -> Path:
    """Where the committed outputs of earlier notebooks are: while a notebook runs in its
    staging folder (common.notebooks), ``$VIT_CARS_FINAL_OUTPUT``; else the output root."""
    return Path(os.environ.get("VIT_CARS_FINAL_OUTPUT") or output_root())


def results_dir(profile: str) -> Path:
    return output_root() / "results" / profile


def figures_dir(profile: str) -> Path:
    return results_dir(profile) / "figures"


def models_dir(profile: str, notebook: str, final: bool = False) -> Path:
    """A notebook's model folders; ``final``: those already committed (another notebook's,
    see :func:`final_output_root`)."""
    root = final_output_root() if final else output_root()
    return root / "models" / profile / notebook


def runs_dir(profile: str) -> Path:
    return output_root() / "runs" / profile


def params_file(profile: str, notebook: str) -> Path:
    """The parameter file of a notebook for a profile."""
    return ROOT / "params" / profile / f"{notebook}.yaml"


def resolve(path: str | Path | None) -> Path:
    """A notebook's ``data_dir`` parameter: None means :func:`data_dir`; a relative path is
    taken from the project root (papermill may run the notebook from another folder)."""
    if path is None or str(path) == "":
        return data_dir()
    path = Path(path)
    return path if path.is_absolute() else ROOT / path
