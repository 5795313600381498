"""What the notebooks and the report show their French reader: tables of runs, the
per-class report, the weights warning, percentages. Computing modules return numbers and
records; this module alone turns them into French tables and Markdown.
"""

from __future__ import annotations

import numpy as np


def pct(x: float, digits: int = 1) -> str:
    """A fraction as a French percentage: 0.337 -> '33,7 %'."""
    return f"{x * 100:.{digits}f}".replace(".", ",") + "\u00a0%"


def interval(ci) -> str:
    """A 95 % interval as French percentages: [0.24, 0.45] -> '24,0–45,0 %'."""
    if not ci:
        return "—"
    low, high = pct(ci[0]), pct(ci[1])
    return low.replace("\u00a0%", "") + "–" + high


def short_weights(weights: dict) -> str:
    """The ``weights`` record of a run (:func:`common.results.weights_info`) for a table."""
    if weights["pretrained"]:
        return str(weights["source"])
    if weights["source"] == "stand-in":
        return "substitut aléatoire (exécution à blanc)"
    if weights["source"] == "pretrained-here":
        return f"pré-entraînés ici ({weights['from']}, {weights['classes']} classes)"
    if weights.get("reason"):
        return "aléatoires (pré-entraînés indisponibles)"
    return "aléatoires"


def runs_table(runs: list[dict]):
    """The runs of one notebook as a readable table (percentages, seconds, images/s, and
    the epoch whose checkpoint was kept, when the run says)."""
    import pandas as pd

    rows = [{"configuration": r["name"],
             "top-1 test": r["metrics"]["test_accuracy"],
             "IC 95 %": interval(r["metrics"].get("test_accuracy_ci95")),
             "top-5 test": r["metrics"]["test_top5_accuracy"],
             "F1 macro": r["metrics"]["test_macro_f1"],
             "meilleure val.": r["metrics"]["best_val_accuracy"],
             "époques": len(r["history"]["loss"]),
             "époque retenue": r.get("best_epoch"),
             "durée (s)": r["train_seconds"],
             "images/s": r["train_images_per_second"],
             "poids": short_weights(r["weights"])} for r in runs]
    table = pd.DataFrame(rows).set_index("configuration")
    pct_columns = ["top-1 test", "top-5 test", "F1 macro", "meilleure val."]
    return table.style.format({**{c: "{:.1%}" for c in pct_columns}, "durée (s)": "{:.0f}",
                               "images/s": "{:.1f}", "époque retenue": "{:.0f}"},
                              na_rep="—")


def per_class_report(y_true, probs, labels: dict[int, tuple[int, str]]):
    """sklearn's classification report as a table: one row per class (official id and
    name), then the macro and weighted averages."""
    import pandas as pd
    from sklearn.metrics import classification_report

    k = len(labels)
    names = [f"{cid} {name}" for _, (cid, name) in sorted(labels.items())]
    report = classification_report(np.asarray(y_true), np.asarray(probs).argmax(axis=1),
                                   labels=np.arange(k), target_names=names, output_dict=True,
                                   zero_division=0)
    report.pop("accuracy", None)
    table = pd.DataFrame(report).T.rename(columns={"precision": "précision", "recall": "rappel",
                                                   "f1-score": "F1", "support": "images"})
    table["images"] = table["images"].astype(int)
    return table


def weights_markdown(status: dict, checkpoint: str, fallback: dict | None) -> str:
    """What a fine-tuning notebook tells its reader about the weights: the checkpoint
    loaded, or a visible warning that a small randomly initialised ViT replaces it.

    ``status``: :func:`common.hf_weights.weights_status`."""
    if status["pretrained"]:
        return (f"Poids pré-entraînés : `{status['weights']['source']}` "
                f"({status['parameters'] / 1e6:.1f} millions de paramètres).")
    fallback = fallback or {}
    arch = ", ".join(f"{k} = {v}" for k, v in fallback.get("config", {}).items())
    return (f"> **⚠️ Avertissement : poids pré-entraînés indisponibles.** Le point de départ "
            f"`{checkpoint}` n'a pas pu être chargé ({status['reason']}).\n>\n"
            f"> Ce notebook entraîne donc **un petit ViT initialisé au hasard** ({arch}), avec "
            f"les réglages d'entraînement `{fallback.get('training', {})}`. Ses chiffres ne "
            "disent rien du fine-tuning : ils montrent seulement que la chaîne tourne de bout "
            "en bout. Les résultats l'indiquent dans le champ `weights`.")


def keras_weights_markdown(weights: dict) -> str:
    """What the EfficientNet notebook tells its reader about the ImageNet weights."""
    if weights["pretrained"]:
        return f"Poids chargés : `{weights['source']}`."
    return ("::: {.callout-warning}\n**Poids pré-entraînés indisponibles.** "
            f"`{weights.get('reason')}`. Le réseau est initialisé au hasard : les chiffres "
            "ci-dessous ne mesurent pas l'apprentissage par transfert et ne se comparent pas à "
            "ceux de 2022.\n:::")
