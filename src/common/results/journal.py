"""The exploration journal: one CSV row per exploration run, committed under explorations/.

Every run behind a choice of the params files is written here with its validation score and
its duration, never a test figure: the journal has no column for one, and :func:`append`
refuses any column it does not have. The report and the params headers summarise it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd

from common.core import atomic, paths

COLUMNS = ["date", "commit", "notebook", "run", "settings", "seed", "val_accuracy",
           "val_images", "best_epoch", "epochs", "train_seconds", "seconds",
           "images_per_second", "cores", "load_before", "note"]
"""The journal's columns: ``settings`` is a JSON object of the keys that differ from the
run's parameters in today's params file (when a params file adopts a setting, its journal's
rows are restated: a test applies them to the file and checks their epochs);
``train_seconds`` the training loop alone, ``seconds`` the whole run (images loaded, model
built, trained); ``load_before`` the machine's one-minute load average when the run started
(other work slows a run down)."""

def journal_file(notebook: str) -> Path:
    """explorations/<notebook>.csv at the project's root."""
    return paths.ROOT / "explorations" / f"{notebook}.csv"


def settings_text(settings: dict) -> str:
    """The ``settings`` column: compact JSON, keys sorted."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


def append(path: Path | str, row: dict) -> Path:
    """Add ``row`` to the journal at ``path`` (created with its header), atomically: the
    file is rewritten whole, so an interrupted run leaves it as it was. Raises ValueError
    on a column outside :data:`COLUMNS` (a test figure, for one)."""
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        raise ValueError(f"journal row: unknown columns {unknown} (exploration runs record "
                         f"validation figures only, never a test figure); the columns are "
                         f"{COLUMNS}")
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    if not old:
        writer.writeheader()
    writer.writerow({k: row.get(k, "") for k in COLUMNS})
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_text(path, old + out.getvalue())


def read(path: Path | str) -> pd.DataFrame:
    """The journal as a table (empty, with the columns, when there is none)."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    table = pd.read_csv(path, dtype={"commit": str, "settings": str, "note": str},
                        keep_default_na=False)
    missing = sorted(set(COLUMNS) - set(table.columns))
    if missing:
        raise ValueError(f"{path}: not an exploration journal (missing columns {missing})")
    return table


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, settings): how many seeds, mean, lowest and highest validation
    accuracy, mean training seconds; best mean first."""
    if table.empty:
        return pd.DataFrame(columns=["run", "settings", "seeds", "val_mean", "val_min",
                                     "val_max", "train_seconds"])
    grouped = table.groupby(["run", "settings"], sort=False)
    out = grouped.agg(seeds=("seed", "nunique"), val_mean=("val_accuracy", "mean"),
                      val_min=("val_accuracy", "min"), val_max=("val_accuracy", "max"),
                      train_seconds=("train_seconds", "mean")).reset_index()
    return out.sort_values("val_mean", ascending=False, kind="stable").reset_index(drop=True)
