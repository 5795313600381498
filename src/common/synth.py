"""The command line of the generated dataset (:mod:`common.data.synth`).

    python -m common.synth DIR --classes 12 --per-class 16 [--test-per-class 4] [--size 48]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.core.commands import run
from common.data.synth import synth
from common.data.table import LOADERS, DataError, summary


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # paths that are not valid UTF-8 still print
        stream.reconfigure(errors="backslashreplace")
    parser = argparse.ArgumentParser(prog="python -m common.synth",
                                     description="Generate a small dataset of shapes.")
    parser.add_argument("dir", type=Path)
    parser.add_argument("--classes", type=int, required=True)
    parser.add_argument("--per-class", type=int, required=True)
    parser.add_argument("--test-per-class", type=int, default=0)
    parser.add_argument("--layout", choices=sorted(LOADERS), default="devkit")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    def make():
        synth(args.dir, args.classes, args.per_class, args.layout, args.test_per_class,
              args.size, args.seed)
        print(json.dumps(summary(args.dir, verify=False), indent=2))

    return run(make, DataError)


if __name__ == "__main__":
    sys.exit(main())
