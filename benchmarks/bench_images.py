"""Image preprocessing benchmark on the shared Stanford Cars copy (or CARS_DATA_DIR).

Prints, at one size (default 72x72, squash): the cold preprocessing time and images/s
(parallel threads, reduced-scale JPEG decoding, cache written), the warm load time (cache hit),
and the naive loop (one image at a time, full decode then resize, no cache) for comparison.
Targets: warm load under 1 s; cold at least 1.5x faster than the naive loop on 2 cores.

    PYTHONPATH=src python benchmarks/bench_images.py [--size 72] [--mode squash] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common.core import paths
from common.data import images
from common.data.table import BBOX, load_table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--size", type=int, default=72)
    parser.add_argument("--mode", choices=images.MODES, default="squash")
    args = parser.parse_args()
    root = args.data or (paths.data_dir() if os.environ.get("CARS_DATA_DIR") else paths.SHARED_DATA)
    if not root.is_dir():
        print(f"bench_images: no dataset at {root}; set CARS_DATA_DIR", file=sys.stderr)
        return 2
    table = load_table(root)
    n = len(table)
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        x_cold, _ = images.load_images(table, args.size, args.mode, cache=Path(cache))
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        x_warm, _ = images.load_images(table, args.size, args.mode, cache=Path(cache),
                                       progress=False)
        warm = time.perf_counter() - t0
    assert np.array_equal(x_cold, x_warm)
    t0 = time.perf_counter()
    bboxes = table[BBOX].to_numpy(dtype=float)
    for i, p in enumerate(table["path"]):
        images.decode(p, args.size, args.mode, bboxes[i], fast=False)
    naive = time.perf_counter() - t0
    result = {"images": n, "size": args.size, "mode": args.mode, "cpus": os.cpu_count(),
              "cold_s": round(cold, 2), "cold_images_per_s": round(n / cold, 1),
              "warm_s": round(warm, 3), "naive_s": round(naive, 2),
              "naive_images_per_s": round(n / naive, 1),
              "cold_speedup_vs_naive": round(naive / cold, 2)}
    print(json.dumps(result))
    ok = warm < 1.0 and naive / cold >= 1.5
    print("targets (warm < 1 s, cold >= 1.5x naive):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
