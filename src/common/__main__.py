"""The project's command line: ``python -m common COMMAND …``.

    python -m common --help              # the commands, one line each
    python -m common COMMAND --help      # what one command takes

Every command is here, parsed with :mod:`argparse`; each hands its work to the module that
owns it and imports that module only when it runs, so ``--help`` is quick and ``deps`` (make's
dependency file, written before any setup) needs only the standard library. An expected
error ends a command with one line, ``error: …``, on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# the standard library only, as every import here
from common.config.study import PROFILES, SCRATCH


def _overrides(pairs) -> dict:
    import yaml

    return {key: yaml.safe_load(value) for key, value in pairs}


def _utf8_safe() -> None:
    for stream in (sys.stdout, sys.stderr):  # paths that are not valid UTF-8 still print
        stream.reconfigure(errors="backslashreplace")


# --- the dataset --------------------------------------------------------------------------

def _data(p):
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("summary", help="print a JSON summary of a dataset folder")
    s.add_argument("dir", nargs="?", type=Path, default=None,
                   help="the dataset folder (default: CARS_DATA_DIR, else data/stanford_cars)")
    s.add_argument("--no-verify", action="store_true", help="do not open every image")
    d = sub.add_parser("download", help="download Stanford Cars into DIR (devkit layout)")
    d.add_argument("dir", nargs="?", type=Path, default=None)

    def handler(args):
        from common.core.commands import run
        from common.data.download import download
        from common.data.table import DataError, summary

        _utf8_safe()
        if args.action == "download":
            return run(lambda: download(args.dir), DataError)
        return run(lambda: print(json.dumps(summary(args.dir, verify=not args.no_verify),
                                            indent=2)), DataError)
    return handler


def _synth(p):
    p.add_argument("dir", type=Path, help="a new (or empty) folder")
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--per-class", type=int, required=True, help="training images per class")
    p.add_argument("--test-per-class", type=int, default=0)
    p.add_argument("--layout", choices=["devkit", "annos", "folders"], default="devkit")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)

    def handler(args):
        from common.core.commands import run
        from common.data.synth import synth
        from common.data.table import DataError, summary

        _utf8_safe()

        def make():
            synth(args.dir, args.classes, args.per_class, args.layout, args.test_per_class,
                  args.size, args.seed)
            print(json.dumps(summary(args.dir, verify=False), indent=2))
        return run(make, DataError)
    return handler


# --- weights and predictions --------------------------------------------------------------

def _weights(p):
    p.add_argument("action", choices=["download"],
                   help="download the pretrained weights (on a machine with network, then "
                        "copy weights/)")

    def handler(args):
        from common.core.commands import run
        from common.models.weight_files import WeightsError, download

        def fetch():
            for path in download():
                print(f"downloaded {path}")
        return run(fetch, WeightsError)
    return handler


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _predict(p):
    p.add_argument("model_dir", type=Path, help="a model folder (models/<profile>/…)")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--top", type=_positive, default=5, help="how many classes to list (default 5)")
    p.add_argument("--csv", type=Path, help="also write one row per image to this CSV file")

    def handler(args):
        from common.inference.predictor import Predictor, csv_problem, expand, write_csv

        _utf8_safe()
        problem = args.csv and csv_problem(args.csv)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
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
    return handler


# --- notebooks, explorations and the report -----------------------------------------------

def _params(p, what="override one parameter (VALUE is read as YAML)"):
    p.add_argument("-p", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help=what)


def _run(p):
    p.add_argument("notebook", type=Path, help="a notebook source, notebooks/<name>.py")
    p.add_argument("--profile", required=True, choices=PROFILES)
    _params(p)
    p.add_argument("--dry-run", action="store_true",
                   help="the profile's models and settings with tiny amounts; outputs go to "
                        "<profile>-dry")

    def handler(args):
        from common.pipeline import notebooks

        return notebooks.command(args.notebook, args.profile, args.p, args.dry_run)
    return handler


def _report(p):
    p.add_argument("--profile", required=True, choices=PROFILES)
    p.add_argument("--dry-run", action="store_true",
                   help="the dry run's results (outputs of <profile>-dry)")
    p.add_argument("--no-quarto", action="store_true", help="use the fallback renderer")

    def handler(args):
        from common.pipeline import notebooks

        return notebooks.command(None, args.profile, [], args.dry_run,
                                 quarto=None if args.no_quarto else "auto")
    return handler


def _render(p):
    p.add_argument("notebook", type=Path, help="an executed report notebook (.ipynb)")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--name", default="rapport")
    p.add_argument("--formats", nargs="+", default=["html", "pdf"], choices=["html", "pdf"])
    p.add_argument("--no-quarto", action="store_true", help="use the pandoc+typst fallback")

    def handler(args):
        from common.report.rendering import render

        try:
            result = render(args.notebook, args.out_dir, args.name, args.formats,
                            quarto=None if args.no_quarto else "auto")
        except (OSError, ValueError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for fmt in args.formats:
            print(f"{fmt.upper()} : {result[fmt]}")
        return 0
    return handler


def _check(p):
    p.add_argument("notebooks", type=Path, nargs="+")
    p.add_argument("--profile", required=True, choices=PROFILES)
    _params(p)

    def handler(args):
        from common.pipeline import notebooks

        return notebooks.check_command(args.notebooks, args.profile, args.p)
    return handler


def _explore(p):
    p.add_argument("notebook", choices=SCRATCH)
    p.add_argument("run", help="the name of a run in the notebook's params file")
    _params(p, "change a key of that run (a group's key with its group: epochs, "
               "network.image_size, optimiser.learning_rate, augmentation.mixup_alpha), or "
               "a process switch of the notebook (mixed_precision, keras_backend, "
               "torch_threads); VALUE read as YAML")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--note", default="")
    p.add_argument("--data-dir", help="the dataset folder (default: the study file's)")
    p.add_argument("--journal", help="another journal file (default: explorations/NOTEBOOK.csv)")
    p.add_argument("--torch-threads", type=int, help="torch threads, instead of the params "
                                                      "file's")
    p.add_argument("--keep", help="keep the last seed's network as a model folder here")
    p.add_argument("--quiet", action="store_true", help="no Keras progress lines")

    def handler(args):
        from common import explore
        from common.config import loading
        from common.core import commands
        from common.data.table import DataError

        return commands.run(
            lambda: explore.explore(args.notebook, args.run, _overrides(args.p), args.seeds,
                                    args.profile, args.note, args.journal, args.data_dir,
                                    verbose=0 if args.quiet else 2,
                                    torch_threads=args.torch_threads, keep=args.keep),
            loading.ConfigError, DataError, FileNotFoundError, ValueError)
    return handler


# --- the project's own checks -------------------------------------------------------------

def _lock(p):
    p.add_argument("lock", nargs="?", type=Path,
                   help="a lock file (default: the one this environment was installed from)")

    def handler(args):
        from common.results import lockfile

        info = lockfile.lock_info(args.lock) if args.lock else lockfile.lock_info()
        print(json.dumps(info, indent=2))
        return 1 if info["mismatches"] else 0
    return handler


def _deps(p):
    p.add_argument("notebooks", nargs="+", help="notebook sources (notebooks/*.py)")

    def handler(args):
        from common.pipeline import dependencies

        sys.stdout.write(dependencies.make_rules(args.notebooks))
        return 0
    return handler


# name -> (one line, the function that declares its arguments and returns its handler)
COMMANDS = {
    "data": ("a dataset folder: its JSON summary, or the download", _data),
    "synth": ("generate a small dataset of shapes (tests, smoke runs)", _synth),
    "weights": ("download the pretrained weights into weights/", _weights),
    "predict": ("predict classes of images with a saved model folder", _predict),
    "run": ("execute one notebook with papermill, as one transaction", _run),
    "report": ("execute report/rapport.py on the results and render it (HTML, PDF)", _report),
    "render": ("render an executed report notebook to HTML and PDF", _render),
    "check": ("check that the notebooks' frameworks see a GPU, before a gpu run", _check),
    "explore": ("an exploration run, scored on validation only, recorded in explorations/",
                _explore),
    "lock": ("compare the installed packages with a lock file (JSON; exit 1 on a mismatch)",
             _lock),
    "deps": ("print make's rules: each notebook's results depend on the modules it imports",
             _deps),
}


def parser() -> argparse.ArgumentParser:
    """The whole command line, one sub-parser per entry of :data:`COMMANDS`."""
    top = argparse.ArgumentParser(prog="python -m common",
                                  description="The vit-cars-poc command line.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (summary, declare) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        p.set_defaults(handler=declare(p))
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
