"""The dataset's command line.

    python -m common.data summary [DIR] [--no-verify]
    python -m common.data download [DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.core.commands import run
from common.data.download import HF_DATASET, download
from common.data.table import DataError, summary


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # paths that are not valid UTF-8 still print
        stream.reconfigure(errors="backslashreplace")
    parser = argparse.ArgumentParser(prog="python -m common.data",
                                     description="Stanford Cars: a summary, or the download.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="print a JSON summary of a dataset folder")
    p.add_argument("dir", nargs="?", type=Path, default=None)
    p.add_argument("--no-verify", action="store_true", help="do not open every image")
    p = sub.add_parser("download", help=f"download {HF_DATASET} into DIR (devkit layout)")
    p.add_argument("dir", nargs="?", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "download":
        return run(lambda: download(args.dir), DataError)
    return run(lambda: print(json.dumps(summary(args.dir, verify=not args.no_verify),
                                        indent=2)), DataError)


if __name__ == "__main__":
    sys.exit(main())
