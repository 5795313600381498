"""The exploration journals (explorations/*.csv, :mod:`common.results.journal`) as the
report's French section: what was tried, on which validation set, and what won there.
Validation figures only: the journals hold no test figure."""

from __future__ import annotations

import json
from pathlib import Path

from common.report.presentation import markdown_table, number, pct
from common.results import journal

def _settings(text: str) -> str:
    """``{"epochs":150,"image_size":64}`` -> ``epochs 150, image_size 64``; ``{}``: the
    params file's run as it is."""
    values = json.loads(text) if text else {}
    if not values:
        return "réglages du fichier"
    return ", ".join(f"`{k}` {v}" for k, v in values.items())


def journal_markdown(table, top: int = 8) -> str:
    """One journal: a sentence on what it holds, and its best settings by mean validation
    accuracy (seeds, mean, range, training seconds)."""
    if table.empty:
        return "Aucune exploration enregistrée."
    summary = journal.summary(table)
    val_sizes = sorted({int(v) for v in table["val_images"] if str(v) != ""})
    sizes = " ou ".join(number(v) for v in val_sizes) or "?"
    weight = (f" (une image y vaut {number(100 / val_sizes[0], 1)} point)"
              if len(val_sizes) == 1 else "")
    text = (f"Le journal compte {number(len(table))} entraînements, {number(len(summary))} "
            f"réglages essayés ({number(table['train_seconds'].sum() / 60)} min "
            "d'entraînement), notés sur "
            f"{sizes} images de validation{weight}, jamais sur le test.")
    rows = []
    for _, r in summary.head(top).iterrows():
        spread = "" if r["seeds"] < 2 else f" ({pct(r['val_min'], 0)}–{pct(r['val_max'], 0)})"
        rows.append([f"{r['run']} : {_settings(r['settings'])}", number(r["seeds"]),
                     pct(r["val_mean"]) + spread, number(r["train_seconds"])])
    table_md = markdown_table(["Réglages (écart au fichier de paramètres)", "Graines",
                               "Validation (min–max)", "Secondes"], rows, [12, 2, 5, 3])
    best = summary.iloc[0]
    winner = (f"Meilleure moyenne de validation : {best['run']}, "
              f"{_settings(best['settings'])} ({pct(best['val_mean'])}).")
    return text + "\n\n" + table_md + "\n\n" + winner


def explorations_markdown(folder: Path | str) -> str:
    """The section's body for every journal in ``folder``."""
    files = sorted(Path(folder).glob("*.csv"))
    if not files:
        return "Aucun journal d'exploration dans ce dépôt."
    parts = []
    for file in files:
        parts.append(f"**Notebook `{file.stem}`.** " + journal_markdown(journal.read(file)))
    return "\n\n".join(parts)
