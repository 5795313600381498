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
           "images_per_second", "cores", "load_before", "note", "ran_with"]
"""The journal's columns: ``settings`` is a JSON object of the keys the exploration changed
(``-p``), against the params file of its commit; ``ran_with`` every setting the run trained
with, as JSON: each key of the run, and the notebook's process switches (``keras_backend``,
``torch_threads``, ``mixed_precision``), so that a later change to the params file never
changes what a row says (rows written before 2026-12-07 hold the run's keys only; their
notes say their threads). Both name a key of a group by its dotted path, as ``-p`` does
(``network.image_size``, ``optimiser.learning_rate``; :func:`flat`); a row with a key that
is not a run's setting is refused (:func:`read`). ``train_seconds`` is the training loop
alone, ``seconds`` the whole run (images loaded, model built, trained); ``load_before``
the machine's one-minute load average when the run started (other work slows a run down)."""

SWITCHES = ("keras_backend", "torch_threads", "mixed_precision")
"""The notebook's process switches a row records in ``ran_with``, beside the run's keys."""

def flat(values: dict, prefix: str = "") -> dict:
    """``{"network": {"image_size": 96}, "epochs": 3}`` -> ``{"network.image_size": 96,
    "epochs": 3}``: a run's settings as the journal and ``-p`` name them."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def setting_keys(notebook: str) -> set[str]:
    """Every key a row of ``notebook``'s journal may hold in ``settings`` and ``ran_with``:
    each setting of its runs (a group's by its dotted path) and the process switches."""
    from common.config import loading, schema

    run = loading.model_in(schema.SCHEMAS[notebook].model_fields["runs"].annotation)
    keys = set(SWITCHES)
    for key, field in run.model_fields.items():
        group = loading.model_in(field.annotation)
        keys |= {f"{key}.{k}" for k in group.model_fields} if group else {key}
    return keys


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
    table = pd.read_csv(path, dtype={"commit": str, "settings": str, "note": str,
                                     "ran_with": str},
                        keep_default_na=False)
    missing = sorted(set(COLUMNS) - set(table.columns))
    if missing:
        raise ValueError(f"{path}: not an exploration journal (missing columns {missing})")
    from common.config.schema import SCHEMAS

    known: dict[str, set] = {}
    for i, row in table.iterrows():  # row i is line i + 2 of the file (after the header)
        if row["notebook"] not in SCHEMAS:
            raise ValueError(f"{path}: row {i + 2}: unknown notebook {row['notebook']!r}")
        if row["notebook"] not in known:
            known[row["notebook"]] = setting_keys(row["notebook"])
        for column in ("settings", "ran_with"):
            text = row[column].strip()
            try:
                values = json.loads(text) if text else {}
            except json.JSONDecodeError:
                values = None
            if not isinstance(values, dict):
                raise ValueError(f"{path}: row {i + 2}: {column} is not a JSON object: "
                                 f"{text[:60]!r}")
            wrong = sorted(set(values) - known[row["notebook"]])
            if wrong:
                raise ValueError(
                    f"{path}: row {i + 2} ({row['run']}, {row['date']}): {column} key "
                    f"{wrong[0]!r} is not a setting of a {row['notebook']} run (a group's key "
                    f"is written with its group, e.g. network.image_size)")
    return table


def ran_with(params, cfg) -> dict:
    """What a row's ``ran_with`` records: every key of the run ``cfg`` (its name aside; a
    group's keys by their dotted path, :func:`flat`) and the process switches of the
    notebook's ``params``."""
    values = flat(cfg.model_dump(mode="json", exclude={"name"}))
    return {**values, **{key: getattr(params, key) for key in SWITCHES}}


def changes(table: pd.DataFrame, profile: str = "cpu") -> pd.Series:
    """For each row, what it ran with that differs from its run in today's params file
    (``profile``), as the ``settings`` text (``{}``: the run as the file has it today):
    read from ``ran_with``, the file being read now, so the rows themselves never change.
    A row without ``ran_with`` gives its ``settings``; a run the file no longer has, all of
    ``ran_with``. The thread count (``torch_threads``) is left out: it says how the machine
    was shared (two explorations at a time, one thread each), not what was trained, so the
    same recipe run with one or two threads is one setting; each row keeps it, and its
    seconds."""
    from common.config import loading

    today: dict = {}

    def differs(row) -> str:
        text = row.get("ran_with")
        if not isinstance(text, str) or not text.strip():
            return str(row["settings"])
        values = json.loads(text)
        key = (row["notebook"], row["run"])
        if key not in today:
            params = loading.load(row["notebook"], profile)
            cfg = next((r for r in params.runs if r.name == row["run"]), None)
            today[key] = ran_with(params, cfg) if cfg is not None else {}
        return settings_text({k: v for k, v in values.items() if k != "torch_threads"
                              and (k not in today[key] or today[key][k] != v)})

    return table.apply(differs, axis=1) if not table.empty else pd.Series(dtype=str)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, settings against today's params file, :func:`changes`): how many
    seeds, mean, lowest and highest validation accuracy, mean training seconds; best mean
    first."""
    if table.empty:
        return pd.DataFrame(columns=["run", "settings", "seeds", "val_mean", "val_min",
                                     "val_max", "train_seconds"])
    table = table.assign(settings=changes(table))
    grouped = table.groupby(["run", "settings"], sort=False)
    out = grouped.agg(seeds=("seed", "nunique"), val_mean=("val_accuracy", "mean"),
                      val_min=("val_accuracy", "min"), val_max=("val_accuracy", "max"),
                      train_seconds=("train_seconds", "mean")).reset_index()
    return out.sort_values("val_mean", ascending=False, kind="stable").reset_index(drop=True)
