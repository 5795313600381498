"""The command line of predictions (:mod:`common.inference.predictor`).

    python -m common.predict MODEL_DIR IMAGE_OR_FOLDER... [--top 5] [--csv OUT]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.inference.predictor import Predictor, expand, write_csv


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def csv_problem(out: Path) -> str | None:
    """Why the CSV file ``out`` could not be written (None when it can), checked before any
    prediction."""
    if out.is_dir():
        return f"--csv {out} is a folder: give a file name"
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        return f"--csv {out}: {parent} is a file, not a folder"
    return None


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # paths that are not valid UTF-8 still print
        stream.reconfigure(errors="backslashreplace")
    parser = argparse.ArgumentParser(prog="python -m common.predict",
                                     description="Predict Stanford Cars classes "
                                                 "with a saved model.")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("inputs", nargs="+", help="image files or folders")
    parser.add_argument("--top", type=_positive, default=5,
                        help="how many classes to list (default 5)")
    parser.add_argument("--csv", type=Path, help="also write one row per image to this CSV file")
    args = parser.parse_args(argv)
    if args.csv and csv_problem(args.csv):
        print(f"error: {csv_problem(args.csv)}", file=sys.stderr)
        return 2
    try:
        predictor = Predictor(args.model_dir)
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files = expand(args.inputs)
    if not files:
        print("error: no image files found in the given inputs", file=sys.stderr)
        return 2
    rows = predictor.predict_files(files, top=args.top)
    for r in rows:
        if "error" in r:
            print(f"{r['path']}: error: {r['error']}", file=sys.stderr)
            continue
        top = ", ".join(f"{cid} {name} ({p:.1%})" for cid, name, p in r["top"])
        print(f"{r['path']}: {r['class_id']} {r['class_name']} ({r['probability']:.1%})"
              f" | top: {top}")
    if args.csv:
        write_csv(rows, args.csv)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
