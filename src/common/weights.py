"""The command line of the pretrained weights (:mod:`common.models.weight_files`).

    python -m common.weights download     # on a machine with network, then copy weights/
"""

from __future__ import annotations

import argparse
import sys

from common.core.commands import run
from common.models.weight_files import WeightsError, download


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.weights",
                                     description="Download the pretrained weights.")
    parser.add_argument("command", choices=["download"])
    parser.parse_args(argv)

    def fetch():
        for path in download():
            print(f"downloaded {path}")

    return run(fetch, WeightsError)


if __name__ == "__main__":
    sys.exit(main())
