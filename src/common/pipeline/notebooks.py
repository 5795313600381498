"""Running the jupytext notebooks headless with papermill, one transaction per notebook.

    python -m common run notebooks/01_vit_scratch.py --profile smoke [-p KEY VALUE]
    python -m common report --profile smoke

The ``.py`` source is turned into a notebook (kernel ``vit-cars-poc``) and executed with
papermill, which injects three parameters: ``profile`` (``<profile>-dry`` for a dry run),
``data_dir`` and ``overrides`` (the ``-p`` values other than ``data_dir``; see
:mod:`common.config.loading` for their forms). The notebook reads its parameter files itself
(:func:`common.pipeline.opening.start`); every key and value is checked here first, so a bad
one stops the run before a kernel starts.

Errors read as one line: a bad parameter or a bad results file (for the report) stops the
run before any kernel starts; a kernel that dies (killed by the system, often for lack of
memory) is named with its notebook and cell, and where the executed copy is.

A run is a transaction. The kernel writes its models, figures and results into a staging
folder, ``<output>/.staging/<profile>-<notebook>/``; only when the notebook succeeds are they
moved into place (models, figures, the executed notebook, and the results file last). A
failed or interrupted run leaves every earlier output as it was; its executed copy is kept as
``runs/<profile>/<notebook>.failed.ipynb`` for inspection. SIGTERM, or the death of the
``make`` that started the run, stops the kernel the same way.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import yaml

from common.config import loading
from common.config.study import NOTEBOOKS
from common.core import paths
from common.core.accelerators import NoGpu

KERNEL = "vit-cars-poc"
KERNEL_DIED = "Kernel died while waiting for execute reply."


class KernelDied(RuntimeError):
    """The kernel of a notebook died (killed by the system, often for lack of memory)."""


class _QuietDeath(logging.Filter):
    """Drop papermill's log line of a dead kernel: :class:`KernelDied` says it, once."""

    def filter(self, record):
        return record.getMessage() != KERNEL_DIED
REPORT = paths.ROOT / "report" / "rapport.py"
STAGING = ".staging"


def outputs(profile: str, dry_run: bool = False) -> str:
    """The folder name of a run's outputs under results/, models/ and runs/."""
    return f"{profile}-dry" if dry_run else profile


def parameters(notebook: Path, profile: str, overrides: dict | None = None,
               dry_run: bool = False) -> dict:
    """What papermill injects: ``profile`` (``<profile>-dry`` for a dry run), ``data_dir``
    and ``overrides`` (the report takes ``profile`` only: the outputs it reads). Raises
    :class:`common.config.loading.ConfigError` for a bad key or value."""
    notebook = Path(notebook)
    if notebook.resolve() == REPORT:
        if set(overrides or {}) - {"profile"}:
            raise loading.ConfigError(f"the report takes no parameter but the profile, got "
                                      f"{sorted(set(overrides) - {'profile'})}")
        return {"profile": outputs(profile, dry_run)}
    overrides = for_notebook(notebook.stem, overrides or {})
    data_dir = overrides.pop("data_dir", None)
    loading.load(notebook.stem, outputs(profile, dry_run), data_dir=data_dir,
                 **overrides)  # check, fail early
    return {"profile": outputs(profile, dry_run),
            "data_dir": None if data_dir is None else str(data_dir), "overrides": overrides}


def for_notebook(notebook: str, overrides: dict) -> dict:
    """The overrides that apply to ``notebook``: those without a notebook prefix, and those
    prefixed with its number (``01.runs.improved-hybrid.epochs``), the prefix removed. A
    prefix that names no notebook is refused."""
    numbers = {name[:2] for name in NOTEBOOKS}
    out = {}
    for key, value in overrides.items():
        head, dot, rest = key.partition(".")
        if dot and head.isdigit():
            if head not in numbers:
                raise loading.ConfigError(f"override {key!r}: no notebook {head} (the notebooks "
                                          f"are {', '.join(sorted(numbers))})")
            if notebook.startswith(head):
                out[rest] = value
        else:
            out[key] = value
    return out


def require_gpus(notebooks: list[Path], profile: str, overrides: dict | None = None) -> dict:
    """Before a real gpu-profile run: check that each framework these notebooks train with
    (their parameters, ``overrides`` included) sees a GPU; return the GPUs of each. Raises
    :class:`common.core.accelerators.NoGpu`, one line (TensorFlow's start-up logs silenced)."""
    from common.core import accelerators

    uses: dict[str, list[str]] = {}
    for notebook in notebooks:
        params = loading.load(Path(notebook).stem, profile,
                              **for_notebook(Path(notebook).stem, overrides or {}))
        uses.setdefault(params.framework, []).append(Path(notebook).stem[:2])
    return accelerators.require_gpus({fw: "notebook" + ("s " if len(nbs) > 1 else " ")
                                      + ", ".join(nbs) for fw, nbs in uses.items()},
                                     quiet=True)


def _papermill(notebook: Path, output: Path, params: dict, kernel: str, progress: bool,
               env: dict | None = None) -> None:
    import jupytext
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    source = output.with_name(output.stem + ".source.ipynb")
    nb = jupytext.read(notebook)
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3 (vit-cars-poc)",
                                 "language": "python"}
    jupytext.write(nb, source, fmt="ipynb")
    saved = dict(os.environ)
    os.environ.update(env or {})  # the kernel inherits this process' environment
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet = _QuietDeath()
    logging.getLogger("papermill").addFilter(quiet)
    try:
        # the kernel logs errors only: not its warning, on every start, that it talks to
        # this process over local TCP without encryption. Once the last cell has run, the
        # kernel is stopped at once: every cell writes its outputs before it ends, and a
        # graceful shutdown waited 2.5 s a notebook for torch and TensorFlow to tear down
        papermill.execute_notebook(str(source), str(output), parameters=params,
                                   kernel_name=kernel, cwd=str(paths.ROOT),
                                   progress_bar=progress, log_output=True,
                                   extra_arguments=["--IPKernelApp.log_level=ERROR"],
                                   shutdown_kernel="immediate")
    except Exception as exc:
        if type(exc).__name__ != "DeadKernelError":
            raise
        raise KernelDied(_dead_cell(output)) from None
    finally:
        logging.getLogger("papermill").removeFilter(quiet)
        os.environ.clear()
        os.environ.update(saved)
        source.unlink(missing_ok=True)


def _dead_cell(executed: Path) -> str:
    """The cell a dead kernel was running: the last one papermill started, as 'cell N
    (first line of its code)'."""
    import nbformat

    try:
        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError):
        return "an unknown cell"
    started = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"
               and (c.metadata.get("papermill") or {}).get("start_time")]
    if not started:
        return "its first cell"
    i, cell = started[-1]
    line = next((s.strip() for s in cell.source.splitlines()
                 if s.strip() and not s.startswith("#")), "")
    line = line if len(line) <= 60 else line[:57] + "..."
    return f"cell {i + 1}" + (f" ({line})" if line else "")


def _replace_tree(src: Path, dest: Path) -> None:
    """Put folder ``src`` at ``dest``, replacing what was there (renames only)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(src, dest)
    shutil.rmtree(old, ignore_errors=True)


def commit(stage: Path, root: Path, profile: str, name: str) -> Path:
    """Move a successful run's outputs from ``stage`` into ``root``: models, figures, the
    executed notebook, the predictions, and the results file last."""
    models = stage / "models" / profile / name
    if models.is_dir():
        _replace_tree(models, root / "models" / profile / name)
    figures = stage / "results" / profile / "figures"
    final_figures = root / "results" / profile / "figures"
    final_figures.mkdir(parents=True, exist_ok=True)
    new = {f.name for f in figures.glob("*")} if figures.is_dir() else set()
    for old in final_figures.glob(f"{name}_*"):
        if old.name not in new:
            old.unlink()
    for f in sorted(new):
        os.replace(figures / f, final_figures / f)
    runs = root / "runs" / profile
    runs.mkdir(parents=True, exist_ok=True)
    os.replace(stage / "runs" / profile / f"{name}.ipynb", runs / f"{name}.ipynb")
    (runs / f"{name}.failed.ipynb").unlink(missing_ok=True)
    predictions = stage / "results" / profile / f"{name}.predictions.csv"
    if predictions.is_file():
        os.replace(predictions, root / "results" / profile / predictions.name)
    results = root / "results" / profile / f"{name}.json"
    os.replace(stage / "results" / profile / f"{name}.json", results)
    shutil.rmtree(stage, ignore_errors=True)
    return results


def execute(notebook: Path | str, profile: str, overrides: dict | None = None,
            kernel: str = KERNEL, progress: bool = True, dry_run: bool = False) -> Path:
    """Execute one notebook with papermill as a transaction (see the module docstring);
    return the executed ``.ipynb`` in ``runs/<profile>/``.

    Raises papermill's ``PapermillExecutionError`` (notebook, cell and exception) on failure,
    :class:`KernelDied` (the cell) when the kernel dies,
    :class:`common.config.loading.ConfigError` for a bad parameter before anything runs, and
    for the report :class:`common.results.contract.ResultsError` for a bad results file,
    before its kernel starts.
    """
    notebook = Path(notebook)
    params = parameters(notebook, profile, overrides, dry_run)
    if profile == "gpu" and not dry_run and notebook.resolve() != REPORT:
        require_gpus([notebook], profile, overrides)
    root = paths.output_root()
    profile = outputs(profile, dry_run)  # where the outputs go
    if notebook.resolve() == REPORT:
        from common.results import contract

        contract.collect(profile)  # a bad results file stops here, before any kernel
        output = paths.runs_dir(profile) / f"{notebook.stem}.ipynb"
        _papermill(notebook, output, params, kernel, progress)
        return output
    stage = root / STAGING / f"{profile}-{notebook.stem}"
    shutil.rmtree(stage, ignore_errors=True)  # what a killed run may have left
    executed = stage / "runs" / profile / f"{notebook.stem}.ipynb"
    try:
        _papermill(notebook, executed, params, kernel, progress,
                   env={"VIT_CARS_OUTPUT": str(stage), "VIT_CARS_FINAL_OUTPUT": str(root)})
        if not (stage / "results" / profile / f"{notebook.stem}.json").is_file():
            raise RuntimeError(f"{notebook} ran but wrote no results file")
    except BaseException:
        if executed.is_file():
            failed = paths.runs_dir(profile) / f"{notebook.stem}.failed.ipynb"
            failed.parent.mkdir(parents=True, exist_ok=True)
            os.replace(executed, failed)
        shutil.rmtree(stage, ignore_errors=True)
        raise
    commit(stage, root, profile, notebook.stem)
    return paths.runs_dir(profile) / f"{notebook.stem}.ipynb"


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _watch_parent(parent: int) -> None:
    """When the process that started this one (make) dies, interrupt this one too."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def check_command(notebooks: list[Path], profile: str, pairs: list) -> int:
    """``python -m common check``: whether each framework the notebooks train with sees a
    GPU; exit status 2, one line, when one does not."""
    try:
        overrides = {k: yaml.safe_load(v) for k, v in pairs}
        seen = require_gpus(notebooks, profile, overrides)
    except (NoGpu, loading.ConfigError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("GPUs: " + "; ".join(f"{fw}: {', '.join(names)}" for fw, names in seen.items()))
    return 0


def command(notebook: Path | None, profile: str, pairs: list, dry_run: bool,
            quarto: str | None = None) -> int:
    """``python -m common run`` (``notebook``) and ``python -m common report`` (None: the
    report, executed then rendered with ``quarto``). ``pairs``: the ``-p KEY VALUE``
    overrides. Returns the exit status; every expected failure says so in one line."""
    signal.signal(signal.SIGTERM, _interrupt)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    # papermill logs the notebook's own output (training progress) at INFO level
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    notebook = REPORT if notebook is None else notebook
    from common.results.contract import ResultsError

    kept = "earlier outputs left as they were"
    try:
        overrides = {k: yaml.safe_load(v) for k, v in pairs}
        out = execute(notebook, profile, overrides, dry_run=dry_run)
    except (FileNotFoundError, loading.ConfigError, yaml.YAMLError, NoGpu) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KernelDied as exc:
        failed = (paths.runs_dir(outputs(profile, dry_run))
                  / f"{notebook.stem}{'' if notebook == REPORT else '.failed'}.ipynb")
        print(f"error: {notebook}: the kernel died in {exc}; the system may have killed it "
              f"for lack of memory (out of memory, or kill -9); {kept}; executed copy in "
              f"{failed}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: {notebook.name} interrupted; {kept}", file=sys.stderr)
        return 130
    except Exception as exc:  # papermill's error names the notebook, cell and exception
        if type(exc).__name__ != "PapermillExecutionError":
            raise
        failed = paths.runs_dir(outputs(profile, dry_run)) / f"{notebook.stem}.failed.ipynb"
        print(f"error: {notebook} failed; {kept}; executed copy in {failed}\n{exc}",
              file=sys.stderr)
        return 1
    print(f"executed {notebook} -> {out}")
    if notebook == REPORT:
        from common.report import rendering

        rendering.render(out, paths.output_root() / "report" / "_output"
                         / outputs(profile, dry_run), quarto=quarto)
    return 0
