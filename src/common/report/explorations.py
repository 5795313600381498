"""The exploration journals (explorations/*.csv, :mod:`common.results.journal`) as the
report's French section: what was tried, on which validation set, and what won there.
Validation figures only: the journals hold no test figure."""

from __future__ import annotations

import json
import re
from pathlib import Path

from common.report.presentation import markdown_table, number, pct
from common.results import journal

def _settings(text: str) -> str:
    """``{"epochs":150,"image_size":64}`` -> ``epochs 150, image_size 64``, each value as the
    params file writes it (``null``, ``true``, ``[16, 32]``); ``{}``: the params file's run as
    it is today."""
    values = json.loads(text) if text else {}
    if not values:
        return "réglages du fichier"
    return ", ".join(f"`{k}` {v if isinstance(v, str) else json.dumps(v)}"
                     for k, v in values.items())


def journal_markdown(table) -> str:
    """One journal in a sentence: how many trainings and settings, on which validation set,
    and which settings have the best mean validation accuracy; when the params file keeps
    others, their mean too, with both ranges over seeds (never read as a tie)."""
    if table.empty:
        return "Aucune exploration enregistrée."
    summary = journal.summary(table)
    val_sizes = sorted({int(v) for v in table["val_images"] if str(v) != ""})
    sizes = " ou ".join(number(v) for v in val_sizes) or "?"
    weight = (f" (une image y vaut {number(100 / val_sizes[0], 1)} point)"
              if len(val_sizes) == 1 else "")
    best = summary.iloc[0]
    runs, tried = len(table), len(summary)
    tested = [c for c in table.columns if "test" in c.lower()]
    never = (f", et aussi sur le test (colonnes {', '.join(tested)})" if tested else
             ", jamais sur le test (le journal n'a pas de colonne pour lui)")
    dates = sorted(d[:10] for d in table.get("date", []) if re.match(r"\d{4}-\d\d-\d\d", str(d)))
    since = f" depuis le {dates[0]}" if dates else ""
    text = (f"Le journal compte {number(runs)} entraînement{'s' * (runs > 1)}{since}, "
            f"{number(tried)} réglage{'s' * (tried > 1)} essayé{'s' * (tried > 1)} "
            f"({number(table['train_seconds'].sum() / 60)} min "
            f"d'entraînement), notés sur {sizes} images de validation{weight}{never}. "
            f"Meilleure moyenne de validation : {best['run']}, "
            f"{_settings(best['settings'])} ({pct(best['val_mean'])}).")
    kept = summary[(summary["run"] == best["run"]) & (summary["settings"] == "{}")]
    if best["settings"] != "{}" and not kept.empty:
        kept = kept.iloc[0]
        text += (f" Le fichier de paramètres en retient d'autres : {pct(kept['val_mean'])} "
                 f"de validation en moyenne (graines : {pct(kept['val_min'])} à "
                 f"{pct(kept['val_max'])}, contre {pct(best['val_min'])} à "
                 f"{pct(best['val_max'])}), en {number(kept['train_seconds'])} s "
                 f"d'entraînement contre {number(best['train_seconds'])} s.")
    return text


def _journals(folder: Path | str) -> list[Path]:
    return sorted(Path(folder).glob("*.csv"))


def explorations_markdown(folder: Path | str) -> str:
    """The section's sentences, one per journal in ``folder``."""
    files = _journals(folder)
    if not files:
        return "Aucun journal d'exploration dans ce dépôt."
    tables = {file: journal.read(file) for file in files}
    return "\n\n".join(_heading(file, table) + journal_markdown(table)
                        for file, table in tables.items())


def _heading(file: Path, table) -> str:
    """``**Notebook `02_vit_scratch_10classes`.**``; for a second journal of a notebook,
    ``**Notebook `02_vit_scratch_10classes`, journal à part `from-faster-01`.**``."""
    notebook = str(table["notebook"].iloc[0]) if not table.empty else file.stem
    extra = _extra(file, notebook)
    return (f"**Notebook `{notebook}`, journal à part `{extra}`.** " if extra
            else f"**Notebook `{file.stem}`.** ")


def _extra(file: Path, notebook: str) -> str:
    """What a journal's file name adds to its notebook's name ("" for the main journal)."""
    return file.stem[len(notebook):].lstrip("_") if file.stem.startswith(notebook) else ""


def _journal_label(file: Path, table) -> str:
    """``02`` for explorations/02_vit_scratch_10classes.csv; ``02 (from-faster-01)`` for a
    second journal of that notebook, explorations/02_vit_scratch_10classes_from-faster-01.csv
    (runs on another footing, kept apart from the first's)."""
    extra = _extra(file, str(table["notebook"].iloc[0]))
    short = file.stem.split("_")[0]
    return f"{short} ({extra})" if extra else short


def explorations_table(folder: Path | str, top: int = 8) -> str:
    """The best settings of every journal in ``folder`` as one table (by mean validation
    accuracy: seeds, mean and range, training seconds); empty when there is no journal."""
    rows = []
    for file in _journals(folder):
        table = journal.read(file)
        if table.empty:
            continue
        for _, r in journal.summary(table).head(top).iterrows():
            spread = ("" if r["seeds"] < 2
                      else f" ({pct(r['val_min'], 0)}–{pct(r['val_max'], 0)})")
            rows.append([_journal_label(file, table), f"{r['run']} : {_settings(r['settings'])}",
                         number(r["seeds"]), pct(r["val_mean"]) + spread,
                         number(r["train_seconds"])])
    if not rows:
        return ""
    return markdown_table(["Notebook", "Réglages (écart au fichier de paramètres)", "Graines",
                           "Validation (min–max)", "Secondes"], rows, [3, 11, 2, 5, 3],
                          "llrrr")
