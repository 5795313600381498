"""How every notebook opens and closes: :func:`start` reads its parameters, sets up its
process and loads its task's data; :func:`show` tells the reader what was loaded;
:meth:`Session.write_results` writes the results file at the end.

Every notebook opens with the same three cells: the ``parameters`` cell (``profile``,
``data_dir``, ``overrides``), ``session = opening.start(NOTEBOOK, globals())`` and
``opening.show(session)``. Papermill injects its ``-p`` values after the parameters cell;
:func:`start` refuses any name the notebook does not declare, with the ``overrides`` form that
would set it, so that no value is silently ignored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from common.config import loading, schema
from common.config.study import NOTEBOOKS
from common.core import accelerators, paths, runtime
from common.data.task import Task, load_task

# what a kernel's namespace holds before the notebook's first cell, besides its parameters
_KERNEL_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}
_PARAMETER_TYPES = (bool, int, float, str, list, dict, tuple, type(None))


@dataclass
class Session:
    """What a notebook works with: its parameters, its task's data, its outputs."""

    notebook: str
    params: schema.Notebook
    task: Task
    started: float
    processes: int = 1
    figures: list[Path] = field(default_factory=list)

    def figure(self, name: str) -> Path:
        """Where the notebook's figure ``name`` goes (the report finds it there)."""
        return paths.figures_dir(self.params.outputs) / f"{self.notebook}_{name}.png"

    def model_dir(self, run: str) -> Path:
        """The model folder of one of this notebook's runs."""
        return paths.models_dir(self.params.outputs, self.notebook) / run

    def fit_runs(self, fit) -> tuple[list, dict]:
        """Train every run of the parameters, one after the other: ``fit(run)`` returns its
        record and its test data. Returns the records and the test data by run name."""
        records, tests = [], {}
        for run in self.params.runs:
            print(f"=== {run.name}")
            record, tests[run.name] = fit(run)
            records.append(record)
        return records, tests

    def write_results(self, runs: list) -> Path:
        """Validate and write ``results/<outputs>/<notebook>.json`` (the figures saved so
        far included); return its path."""
        from common.results.contract import write

        return write(self.params, self.notebook, started=self.started,
                     dataset=self.task.record(), runs=runs, figures=self.figures)


def injected_unknown(namespace: dict) -> list[str]:
    """The names papermill injected that the parameters cell does not declare."""
    return sorted(k for k, v in namespace.items()
                  if not k.startswith("_") and k not in loading.NOTEBOOK_PARAMETERS
                  and k not in _KERNEL_NAMES and isinstance(v, _PARAMETER_TYPES))


def start(notebook: str, namespace: dict) -> Session:
    """Open ``notebook``: check what papermill injected, load the parameters (profile, data
    folder and overrides from ``namespace``, the notebook's globals), load the task's data
    and split, set up the process (Keras backend before Keras is imported, torch threads,
    precision, processes) and check that a real gpu-profile run has its GPU
    (:func:`common.core.accelerators.require_gpus`). Raises
    :class:`common.config.loading.ConfigError`, :class:`common.data.table.DataError` or
    :class:`common.core.accelerators.NoGpu`, one line."""
    started = time.time()
    unknown = injected_unknown(namespace)
    if unknown:
        name = unknown[0]
        raise loading.ConfigError(
            f"unknown parameter {name!r}: {notebook} declares only "
            f"{', '.join(loading.NOTEBOOK_PARAMETERS)}; "
            f"{loading.suggestion(name, namespace[name], notebook)}")
    params = loading.load(notebook, namespace.get("profile", "cpu"),
                          data_dir=namespace.get("data_dir"),
                          **(namespace.get("overrides") or {}))
    # the data first: a bad data folder stops before Keras, TensorFlow or torch is imported
    task = load_task(params.study, NOTEBOOKS[notebook].task, loading.limits(params))
    processes = 1
    if isinstance(params, schema.KerasSwitches):
        runtime.prepare_keras(params)
    else:
        runtime.set_torch_threads(params.torch_threads)
        processes = runtime.training_processes(params.processes,
                                               [run.batch_size for run in params.runs])
    if params.profile == "gpu" and not params.dry_run:
        accelerators.require_gpus({params.framework: notebook})
    return Session(notebook, params, task, started, processes)


def show(session: Session) -> None:
    """Show the reader the data, the task and its split (French)."""
    from IPython.display import Markdown, display

    from common.report.presentation import task_markdown
    from common.results.records import Dataset

    display(Markdown(task_markdown(Dataset.model_validate(session.task.record()),
                                   session.params.outputs)))


def show_weights(session: Session) -> None:
    """Check, before any work, that a fine-tuning notebook's pretrained weights can be had,
    and tell the reader which weights it starts from, or warn, visibly, that a small random
    ViT replaces them (cpu and smoke profiles; the gpu profile stops here); then show the
    model that will be fine-tuned, module by module, with its new head for the task's
    classes."""
    import sys

    from IPython.display import Markdown, display

    from common.models.hf_classifier import weights_status
    from common.report.presentation import weights_markdown

    p = session.params
    status = weights_status(p.checkpoint, profile=p.profile, fallback=p.fallback,
                            timeout=p.hub_timeout, stand_in=p.dry_run, labels=session.task.labels)
    if not status["pretrained"]:
        print(f"WARNING: {p.checkpoint}: {status['reason']}", file=sys.stderr)
    display(Markdown(weights_markdown(status, p.checkpoint, p.fallback)))
    print(status["model"])
