"""Running the jupytext notebooks headless with papermill.

    python -m common.notebooks run notebooks/01_vit_scratch.py --profile smoke [-p KEY VALUE]

The ``.py`` source is turned into a notebook (kernel ``vit-cars-poc``) and executed with
papermill, which injects three parameters: ``profile``, ``data_dir`` and ``overrides`` (the
``-p`` values other than those two). The notebook reads ``params/<profile>/<notebook>.yaml``
itself, through :mod:`common.config`; the overrides are checked here first, so an unknown key
stops the run before a kernel starts. The executed copy goes to
``runs/<profile>/<notebook>.ipynb``. The notebook writes its own results file at its very end
and atomically, so a notebook that fails keeps the previous good results; its executed copy
stays in ``runs/`` for inspection.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import yaml

from common import config, paths

KERNEL = "vit-cars-poc"


REPORT = paths.ROOT / "report" / "rapport.py"


def parameters(notebook: Path, profile: str, overrides: dict | None = None) -> dict:
    """What papermill injects: ``profile``, ``data_dir`` and ``overrides`` (the report takes
    ``profile`` only). Raises :class:`common.config.ConfigError` for an unknown key."""
    notebook = Path(notebook)
    if notebook.resolve() == REPORT:
        if set(overrides or {}) - {"profile"}:
            raise config.ConfigError(f"the report takes no parameter but the profile, got "
                                     f"{sorted(set(overrides) - {'profile'})}")
        return {"profile": profile}
    overrides = dict(overrides or {})
    data_dir = overrides.pop("data_dir", None)
    config.load(notebook.stem, profile, data_dir=data_dir, **overrides)  # check, fail early
    return {"profile": profile, "data_dir": None if data_dir is None else str(data_dir),
            "overrides": overrides}


def execute(notebook: Path | str, profile: str, overrides: dict | None = None,
            output: Path | None = None, kernel: str = KERNEL, progress: bool = True) -> Path:
    """Execute one jupytext notebook with papermill; return the executed ``.ipynb`` path.

    Raises papermill's ``PapermillExecutionError`` (notebook, cell and exception) on failure.
    """
    import jupytext
    import papermill

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the kernel inherits it: less noise
    notebook = Path(notebook)
    params = parameters(notebook, profile, overrides)
    output = Path(output or paths.runs_dir(profile) / f"{notebook.stem}.ipynb")
    output.parent.mkdir(parents=True, exist_ok=True)
    source = output.with_name(output.stem + ".source.ipynb")
    nb = jupytext.read(notebook)
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3 (vit-cars-poc)",
                                 "language": "python"}
    jupytext.write(nb, source, fmt="ipynb")
    try:
        papermill.execute_notebook(str(source), str(output),
                                   parameters=params,
                                   kernel_name=kernel, cwd=str(paths.ROOT),
                                   progress_bar=progress, log_output=True)
    finally:
        source.unlink(missing_ok=True)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.notebooks")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute one notebook with papermill")
    run.add_argument("notebook", type=Path)
    run.add_argument("--profile", required=True, choices=config.PROFILES)
    run.add_argument("--output", type=Path)
    run.add_argument("-p", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                     help="override one parameter (VALUE is read as YAML)")
    rep = sub.add_parser("report", help="execute report/rapport.py and render it (HTML, PDF)")
    rep.add_argument("--profile", required=True, choices=config.PROFILES)
    rep.add_argument("--no-quarto", action="store_true", help="use the fallback renderer")
    args = parser.parse_args(argv)
    # papermill logs the notebook's own output (training progress) at INFO level
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "report":
        args.notebook, args.output, args.p = REPORT, None, []
    overrides = {k: yaml.safe_load(v) for k, v in args.p}
    try:
        out = execute(args.notebook, args.profile, overrides, args.output)
    except (FileNotFoundError, config.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # papermill's error names the notebook, cell and exception
        if type(exc).__name__ != "PapermillExecutionError":
            raise
        print(f"error: {args.notebook} failed; executed copy kept in "
              f"{args.output or paths.runs_dir(args.profile) / (args.notebook.stem + '.ipynb')}\n"
              f"{exc}", file=sys.stderr)
        return 1
    print(f"executed {args.notebook} -> {out}")
    if args.command == "report":
        from common import report

        report.render(out, paths.output_root() / "report" / "_output" / args.profile,
                      quarto=None if args.no_quarto else "auto")
    return 0


if __name__ == "__main__":
    sys.exit(main())
