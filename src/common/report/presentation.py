"""What the notebooks and the report show their French reader: numbers, tables of runs,
the per-class report, the weights warning. Computing modules return numbers and records;
this module alone turns them into French text.

Numbers follow French typography: a decimal comma, a non-breaking space before ``%``, and
thousands separated by a narrow non-breaking space (:func:`number`, :func:`pct`). Tables are
Markdown pipe tables with short cell values and a legend, so that they fit a portrait A4
page in both renderers (HTML and Typst); the relative widths of their columns are set by
the dashes of the separator line.
"""

from __future__ import annotations

import numpy as np

NBSP = "\u00a0"  # before % and : in French
NNBSP = "\u202f"  # thousands separator
ZWSP = "\u200b"  # a line may break here (after a hyphen of a long run name)
WJ = "\u2060"  # no line break here (after the dash of an interval)


def number(x: float, digits: int = 0) -> str:
    """A French number: 4880 -> '4 880', 0.5 -> '0,5' (narrow non-breaking spaces)."""
    text = f"{x:,.{digits}f}"
    return text.replace(",", NNBSP).replace(".", ",")


def pct(x: float, digits: int = 1) -> str:
    """A fraction as a French percentage: 0.337 -> '33,7 %'."""
    return number(x * 100, digits) + NBSP + "%"


def points(x: float, digits: int = 1) -> str:
    """A difference of two fractions in percentage points: 0.012 -> '1,2'."""
    return number(abs(x) * 100, digits)


def interval(ci) -> str:
    """A 95 % interval as French percentages: [0.246, 0.442] -> '24,6–44,2 %', on one line
    (a word joiner after the dash: a narrow table column would break the range there)."""
    if not ci or ci[0] is None:
        return "—"
    return number(ci[0] * 100, 1) + "–" + WJ + pct(ci[1])


def percent_axis(axis) -> None:
    """Percent ticks with a decimal comma on a matplotlib axis (locale-independent)."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: pct(v, 0)))


def breakable(name: str) -> str:
    """A run name that may wrap after its hyphens."""
    return name.replace("-", "-" + ZWSP)


def patches_markdown(run) -> str:
    """The caption of the patches figure: the image size, the patch size and the grid of
    patches of one configuration (its network's ``image_size`` and ``patch_size``)."""
    net = run.network
    side = net.image_size // net.patch_size
    return (f"Image de {net.image_size}{NBSP}px, patchs de {net.patch_size}{NBSP}px "
            f"(configuration *{run.name}*) : {side} × {side} = {number(side * side)} patchs.")


# --------------------------------------------------------------------------- weights

# short label -> what it means, for the legend under a table
WEIGHT_LEGEND = {
    "aléatoires": "poids initialisés au hasard",
    "aléatoires*": "poids initialisés au hasard, faute des poids pré-entraînés demandés",
    "substitut": "poids aléatoires de même architecture (exécution à blanc)",
    "pré-entraîné ici": "réseau entraîné d'abord par le premier notebook, sur toutes les "
                        "classes",
}


def short_weights(weights: dict) -> str:
    """A few letters for the ``weights`` record of a run (see :data:`WEIGHT_LEGEND`)."""
    source = str(weights["source"])
    if weights["pretrained"]:
        if "in21k" in source:
            return "ImageNet-21k"
        if "imagenet" in source.lower() or "efficientnet" in source.lower():
            return "ImageNet"
        return source.rsplit("/", 1)[-1]
    if source == "stand-in":
        return "substitut"
    if source == "pretrained-here":
        return "pré-entraîné ici"
    return "aléatoires*" if weights.get("reason") else "aléatoires"


def markdown_escape(text: str) -> str:
    """Text shown as is in Markdown: its emphasis marks (``*``, ``_``) escaped."""
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")


def weights_legend(labels) -> str:
    """The legend of the weights column for the labels a table shows, each label in italics;
    the asterisk that ends ``aléatoires*`` is escaped, or it would close the emphasis."""
    parts = [f"*{markdown_escape(label)}* : {WEIGHT_LEGEND[label]}"
             for label in sorted(set(labels)) if label in WEIGHT_LEGEND]
    return ("Poids : " + " ; ".join(parts) + ".") if parts else ""


# --------------------------------------------------------------------------- tables

def markdown_table(header: list[str], rows: list[list[str]], widths: list[int],
                   align: str = "") -> str:
    """A pipe table; ``widths``: relative column widths (the dashes of the separator);
    ``align``: one letter per column, l or r (default: first left, others right)."""
    align = align or "l" + "r" * (len(header) - 1)
    seps = [("-" * w + ":") if a == "r" else (":" + "-" * w) for w, a in zip(widths, align)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(seps) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _display(text: str):
    from IPython.display import Markdown

    return Markdown(text)


def runs_table(runs: list, legend: bool = True):
    """The runs of one notebook as a Markdown table (test top-1 with its 95 % interval,
    top-5, macro F1, best validation, epochs, training time and speed, weights), with its
    legend below. ``runs``: :class:`common.results.contract.Run` records."""
    rows, weights = [], []
    for r in runs:
        m = r.metrics
        epochs = len(r.history.loss)
        kept = r.best_epoch
        w = short_weights(r.weights.model_dump())
        weights.append(w)
        rows.append([breakable(r.name), pct(m.test_accuracy),
                     interval(m.test_accuracy_ci95), pct(m.test_top5_accuracy),
                     pct(m.test_macro_f1), pct(m.best_val_accuracy),
                     f"{epochs} ({kept})" if kept else str(epochs),
                     number(r.train_seconds), number(r.train_images_per_second), w])
    header = ["configuration", "top-1 test", "IC 95 %", "top-5", "F1 macro", "val.",
              "époques (retenue)", "durée (s)", "img/s", "poids"]
    text = markdown_table(header, rows, [16, 8, 11, 7, 7, 7, 9, 7, 7, 12])
    if legend:
        text += ("\n\n*Top-1 test* et son intervalle de confiance à 95 % (Wilson) ; *val.* : "
                 "meilleure exactitude de validation, celle de l'époque retenue. "
                 + weights_legend(weights))
    return _display(text)


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


def per_class_table(report, extremes: int | None = None):
    """The per-class report as a Markdown table: every class, or only the ``extremes``
    best and worst by F1 (then the table says so), then the averages."""
    classes, averages = report.iloc[:-2].sort_values("F1", ascending=False), report.iloc[-2:]
    note = ""
    if extremes and len(classes) > 2 * extremes:
        best, worst = classes.head(extremes), classes.tail(extremes)
        gap = ["…"] * 5
        parts = [best, None, worst]
        note = (f"Les {extremes} classes au meilleur F1, puis les {extremes} au plus faible, "
                f"sur {len(classes)} ; ensuite les moyennes sur toutes les classes.")
    else:
        parts = [classes]
    rows = []
    for part in parts + [averages]:
        if part is None:
            rows.append(gap)
            continue
        for name, r in part.iterrows():
            label = {"macro avg": "moyenne (macro)",
                     "weighted avg": "moyenne (pondérée)"}.get(name, name)
            rows.append([label, number(r["précision"], 2), number(r["rappel"], 2),
                         number(r["F1"], 2), number(r["images"])])
    text = markdown_table(["classe", "précision", "rappel", "F1", "images"], rows,
                          [40, 9, 9, 9, 8])
    return _display(text + (f"\n\n{note}" if note else ""))


# --------------------------------------------------------------------------- weights text

def weights_markdown(status: dict, checkpoint: str, fallback) -> str:
    """What a fine-tuning notebook tells its reader about the weights: the checkpoint
    loaded, or a visible warning that a small randomly initialised ViT replaces it.

    ``status``: :func:`common.models.hf_classifier.weights_status`."""
    if status["pretrained"]:
        return (f"Poids pré-entraînés : `{status['weights']['source']}` "
                f"({number(status['parameters'] / 1e6, 1)} millions de paramètres).")
    arch = ", ".join(f"{k} = {v}" for k, v in (fallback.config if fallback else {}).items())
    training = fallback.training.model_dump(exclude_none=True) if fallback else {}
    return (f"> **⚠️ Avertissement : poids pré-entraînés indisponibles.** Le point de départ "
            f"`{checkpoint}` n'a pas pu être chargé ({status['reason']}).\n>\n"
            f"> Ce notebook entraîne donc **un petit ViT initialisé au hasard** ({arch}), avec "
            f"les réglages d'entraînement `{training}`. Ses chiffres ne "
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


CROPS = {"squash": "l'image entière ramenée au carré, comme en 2022",
         "center": "un carré découpé au centre de l'image",
         "bbox": "l'image recadrée sur sa boîte englobante"}


def crop_words(crop) -> str:
    """How images were read (a results file's ``dataset.crop``), in French; with ``bbox``,
    the margin and how many images had a box."""
    if crop.mode != "bbox":
        return CROPS[crop.mode]
    return (f"{CROPS['bbox']} (marge {pct(crop.margin, 0)} ; "
            f"{number(crop.images_with_box)} images sur {number(crop.images)} ont une "
            "boîte, les autres sont prises entières)")


def task_markdown(dataset, outputs: str) -> str:
    """What a notebook tells its reader about its data: the task's images and classes, the
    study's split and its test set (``dataset``: the results'
    :class:`common.results.contract.Dataset`)."""
    sizes, split, test = dataset.split_sizes, dataset.split, dataset.test_set
    kind = "données générées" if dataset.synthetic else f"organisation {dataset.layout}"
    ids = "" if dataset.task == "all" else \
        " : identifiants officiels " + ", ".join(str(c) for c in dataset.class_ids)
    low, high = dataset.images_per_class
    drawn = ("le test officiel du jeu de données" if dataset.official_test else
             f"{pct(split.test_fraction, 0)} de chaque classe, tirés au hasard")
    dry = (f" Exécution à blanc (profil `{outputs}`) : quelques images par ensemble seulement."
           if outputs.endswith("-dry") else "")
    if dataset.crop:
        dry = (" Chaque notebook lit chaque image de la même façon : "
               f"{crop_words(dataset.crop)}." + dry)
    return (f"Jeu de données : **{number(dataset.n_images)} images**, "
            f"**{dataset.n_classes} classes**{ids} ({kind}), "
            + (f"{number(low)} images par classe" if low == high else
               f"de {number(low)} à {number(high)} images par classe")
            + f". Un seul découpage pour toute l'étude (graine "
            f"{split.seed}) : entraînement {number(sizes.train)}, validation "
            f"{number(sizes.val)}, test **{number(sizes.test)} images**, {drawn} "
            f"(empreinte `{test.fingerprint}`, la même pour tous les notebooks de cette "
            f"tâche).{dry}")
