"""The figures of the notebooks (matplotlib/seaborn), saved as PNG and left open for display.

Every function draws one figure, saves it to ``path`` (folders created) and returns the
path; in a notebook the figure also shows inline.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")
RIGHT, WRONG = "#1a7f37", "#cf222e"


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _short(name: str, width: int = 24) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _grid(n: int, cols: int):
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


def sample_images(x, names: list[str], path, cols: int = 6) -> Path:
    """A grid of images titled with their class names."""
    fig, axes = _grid(len(x), cols)
    for ax, im, name in zip(axes, x, names):
        ax.imshow(im)
        ax.set_title(_short(name), fontsize=8)
    return _save(fig, path)


def patches(image, patch_size: int, path) -> Path:
    """One image and the same image cut into its ``patch_size`` patches (as the ViT sees it)."""
    size = image.shape[0] // patch_size * patch_size
    image = image[:size, :size]
    n = size // patch_size
    fig = plt.figure(figsize=(9, 4.2))
    ax = fig.add_subplot(1, 2, 1)
    ax.imshow(image)
    ax.set_title(f"{size}×{size} px")
    ax.axis("off")
    grid = fig.add_gridspec(n, n, left=0.53, right=0.97, wspace=0.08, hspace=0.08)
    for i in range(n):
        for j in range(n):
            sub = fig.add_subplot(grid[i, j])
            sub.imshow(image[i * patch_size:(i + 1) * patch_size,
                             j * patch_size:(j + 1) * patch_size])
            sub.axis("off")
    fig.suptitle(f"{n * n} patchs de {patch_size}×{patch_size} px", x=0.75, y=0.98)
    return _save(fig, path)


def training_curves(runs: list[dict], path) -> Path:
    """Loss and accuracy per epoch (train dashed, validation solid) for each run."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.2))
    palette = sns.color_palette(n_colors=max(1, len(runs)))
    for colour, run in zip(palette, runs):
        h = run["history"]
        epochs = np.arange(1, len(h["loss"]) + 1)
        ax_loss.plot(epochs, h["loss"], "--", color=colour, alpha=0.7)
        ax_loss.plot(epochs, h["val_loss"], color=colour, label=run["name"])
        ax_acc.plot(epochs, h["accuracy"], "--", color=colour, alpha=0.7)
        ax_acc.plot(epochs, h["val_accuracy"], color=colour, label=run["name"])
    ax_loss.set(xlabel="époque", ylabel="perte", title="Perte (tirets : entraînement)")
    ax_acc.set(xlabel="époque", ylabel="exactitude", title="Exactitude (trait plein : validation)")
    ax_acc.yaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    ax_acc.legend(fontsize=8)
    return _save(fig, path)


def confusion(y_true, y_pred, names: list[str], path) -> Path:
    """Confusion matrix (rows: true class, columns: predicted class), counts annotated."""
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=np.arange(len(names)))
    size = max(5, 0.6 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    short = [_short(n, 22) for n in names]
    sns.heatmap(cm, annot=len(names) <= 20, fmt="d", cmap="Blues", cbar=False, ax=ax,
                xticklabels=short, yticklabels=short)
    ax.set(xlabel="classe prédite", ylabel="vraie classe")
    ax.tick_params(axis="x", rotation=60)
    return _save(fig, path)


def predictions(x, true_names: list[str], pred_names: list[str], probs, path,
                cols: int = 5) -> Path:
    """Images with their true and predicted names: green when right, red when wrong."""
    fig, axes = _grid(len(x), cols)
    for ax, im, t, p, pr in zip(axes, x, true_names, pred_names, probs):
        ax.imshow(im)
        ax.set_title(f"vrai : {_short(t, 22)}\nprédit : {_short(p, 22)} ({pr:.0%})",
                     fontsize=7, color=RIGHT if t == p else WRONG)
    return _save(fig, path)


def class_counts(counts, path) -> Path:
    """Histogram of the number of images per class."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.histplot(np.asarray(counts), bins=20, ax=ax)
    ax.set(xlabel="images par classe", ylabel="nombre de classes")
    return _save(fig, path)


def attention(images, maps, titles: list[str], path) -> Path:
    """Images with an attention map (values 0..1, any resolution) laid over them."""
    fig, axes = _grid(len(images), min(4, len(images)))
    for ax, im, m, title in zip(axes, images, maps, titles):
        ax.imshow(im)
        ax.imshow(m, cmap="inferno", alpha=0.55, extent=(0, im.shape[1], im.shape[0], 0),
                  interpolation="bilinear")
        ax.set_title(_short(title, 26), fontsize=8)
    return _save(fig, path)


def one_per_class(y, n: int) -> list[int]:
    """``n`` indices: the first image of each class in label order, then the others."""
    y = np.asarray(y)
    firsts = [int(np.flatnonzero(y == c)[0]) for c in sorted(set(y.tolist()))]
    taken = set(firsts)
    return (firsts + [i for i in range(len(y)) if i not in taken])[:n]


def prediction_grid(test: dict, labels: dict, n: int, path) -> Path:
    """``n`` test images, one per class first (in label order), with true and predicted names.

    ``test`` holds ``x`` (uint8 images), ``y`` (0-based labels) and ``probs``.
    """
    y = np.asarray(test["y"])
    pick = one_per_class(y, n)
    pred = np.asarray(test["probs"]).argmax(axis=1)
    return predictions(test["x"][pick], [labels[int(y[i])][1] for i in pick],
                       [labels[int(pred[i])][1] for i in pick],
                       [float(test["probs"][i][pred[i]]) for i in pick], path)


def comparison(ours, reference: dict, titles: dict, path) -> Path:
    """Horizontal bars: every run's test top-1 (ours) beside the 2022 numbers (grey, hatched).

    ``ours``: DataFrame with ``notebook``, ``run``, ``test_accuracy``; ``reference``:
    notebook -> list of {run, value, split}; ``titles``: notebook -> short label.
    """
    rows = []
    for notebook, title in titles.items():
        for r in ours[ours["notebook"] == notebook].itertuples():
            rows.append((f"{title} · {r.run}", r.test_accuracy, "ours"))
        for ref in reference.get(notebook, []):
            rows.append((f"{title} · 2022 {ref['run']} ({ref['split']})", ref["value"], "2022"))
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.2))
    ys = np.arange(len(rows))[::-1]
    for y, (_, value, kind) in zip(ys, rows):
        ax.barh(y, value, color="#0969da" if kind == "ours" else "#afb8c1",
                hatch=None if kind == "ours" else "//", edgecolor="white")
        ax.text(value + 0.005, y, f"{value:.1%}", va="center", fontsize=7)
    ax.set_yticks(ys, [r[0] for r in rows], fontsize=7)
    ax.set_xlim(0, 1.08)
    ax.xaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel("exactitude top-1")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#0969da", label="cette reprise (test)"),
                       Patch(facecolor="#afb8c1", hatch="//",
                             label="rapport de 2022 (chiffres cités)")],
              loc="lower right", fontsize=8)
    return _save(fig, path)
