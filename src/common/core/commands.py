"""What the command lines share: an expected error ends the command with one line."""

from __future__ import annotations

import sys


def run(action, *errors: type[BaseException]) -> int:
    """Run ``action()``; one of the expected ``errors`` prints ``error: …`` on stderr, one
    line, and gives exit status 2 (0 when all went well)."""
    try:
        action()
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
