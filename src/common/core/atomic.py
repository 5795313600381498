"""Files written whole or not at all.

:func:`atomic_file` writes to a temporary file in the target's folder and renames it over
the target at the end, so an interrupted write never leaves a half-written file that loads
as valid, and never replaces a good file with a bad one. The file gets the mode a plain
``open`` would give it (``0666`` less the user's umask), not ``mkstemp``'s ``0600``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: Path | str, mode: str = "w", encoding: str | None = "utf-8",
                newline: str | None = None):
    """Open a temporary file beside ``path`` (``mode`` "w" or "wb"); rename it to ``path``
    when the block ends without error, delete it otherwise."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes only, mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": newline}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path | str, text: str) -> Path:
    with atomic_file(path) as f:
        f.write(text)
    return Path(path)


def write_json(path: Path | str, payload, default=None) -> Path:
    """``payload`` as indented UTF-8 JSON, atomically."""
    with atomic_file(path) as f:
        json.dump(payload, f, indent=2, ensure_ascii=False, default=default)
        f.write("\n")
    return Path(path)


def copy_file(src: Path | str, dest: Path | str) -> Path:
    """Copy ``src`` to ``dest`` atomically."""
    with open(src, "rb") as source, atomic_file(dest, "wb") as f:
        shutil.copyfileobj(source, f)
    return Path(dest)
