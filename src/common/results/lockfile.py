"""The lock of exact versions that the study ran with, for the report's provenance.

``requirements/cpu.lock.txt`` (written by ``make lock`` with pip-compile) pins every package,
transitive ones included; ``make setup`` installs exactly it. :func:`lock_info` says which
lock that is (its path and SHA-256) and where the running interpreter departs from it: each
locked package that is missing or installed at another version. An empty ``mismatches``
list means the results came from the locked environment.

``python -m common lock [LOCK]`` prints the same as JSON and exits 1 on a mismatch.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from common.core import paths

CPU_LOCK = Path("requirements/cpu.lock.txt")
GPU_LOCK = Path("requirements/gpu.lock.txt")


def read_lock(path: Path | str) -> dict[str, str]:
    """``{canonical package name: locked version}`` from a pip-compile lock.

    Comments, pip options (``--...``, ``-r``/``-c``/``-e`` lines) and ``--hash`` continuations
    are skipped; every other line must pin one package with ``==``."""
    locked: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip().rstrip("\\").strip()
        if not line or line.startswith(("#", "-")):
            continue
        req = Requirement(line)
        pins = [s for s in req.specifier if s.operator in ("==", "===")]
        if len(pins) != 1 or len(req.specifier) != 1:
            raise ValueError(f"{path}:{number}: not an exact pin: {raw.strip()!r}")
        locked[canonicalize_name(req.name)] = pins[0].version
    return locked


# The CUDA packages that write the same files under another CUDA major's name (cuDNN 9 and
# NCCL 2 keep one library name across majors: nvidia/cudnn/lib/libcudnn*.so.9,
# nvidia/nccl/lib/libnccl.so.2): whichever pip installs last wins, and uninstalling one
# deletes the other's files.
SAME_FILES = (("nvidia-cudnn-cu12", "nvidia-cudnn-cu13"), ("nvidia-nccl-cu12", "nvidia-nccl-cu13"),
              ("nvidia-cusparselt-cu12", "nvidia-cusparselt-cu13"),
              ("nvidia-nvshmem-cu12", "nvidia-nvshmem-cu13"))


def cuda_majors(locked: dict[str, str]) -> dict[int, list[str]]:
    """``{CUDA major: the packages of a lock that bring it}``: the ``-cuNN`` packages, and
    the CUDA runtime and toolkit packages by their version's major."""
    majors: dict[int, list[str]] = {}
    for name, version in sorted(locked.items()):
        tail = name.rsplit("-cu", 1)
        if name.startswith("nvidia-") and len(tail) == 2 and tail[1].isdigit():
            major = int(tail[1])
        elif name in ("cuda-toolkit", "nvidia-cuda-runtime"):
            major = Version(version).major
        else:
            continue
        majors.setdefault(major, []).append(name)
    return majors


def same_files(locked: dict[str, str]) -> list[tuple[str, str]]:
    """The pairs of :data:`SAME_FILES` that a lock installs both of."""
    return [pair for pair in SAME_FILES if all(name in locked for name in pair)]


def installed_version(name: str) -> str | None:
    """The version of ``name`` that the running interpreter sees, None when not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _same(locked: str, installed: str) -> bool:
    try:
        return Version(locked) == Version(installed)
    except InvalidVersion:
        return locked == installed


def mismatches(locked: dict[str, str], version_of=installed_version) -> list[dict]:
    """``[{"package", "locked", "installed"}]`` for each locked package that is missing
    (``installed`` None) or installed at another version, sorted by name."""
    out = []
    for name, version in sorted(locked.items()):
        installed = version_of(name)
        if installed is None or not _same(version, installed):
            out.append({"package": name, "locked": version, "installed": installed})
    return out


def lock_info(lock: Path | str = CPU_LOCK, version_of=installed_version) -> dict:
    """``{"file", "sha256", "packages", "mismatches"}`` for ``lock`` (relative to the project
    root unless absolute): its path relative to the root, the SHA-256 of its bytes, how many
    packages it pins, and :func:`mismatches` against the running interpreter."""
    path = Path(lock)
    if not path.is_absolute():
        path = paths.ROOT / path
    data = path.read_bytes()
    try:
        shown = path.resolve().relative_to(paths.ROOT).as_posix()
    except ValueError:
        shown = str(path)
    locked = read_lock(path)
    return {
        "file": shown,
        "sha256": hashlib.sha256(data).hexdigest(),
        "packages": len(locked),
        "mismatches": mismatches(locked, version_of),
    }
