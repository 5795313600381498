"""The figures of the notebooks (matplotlib/seaborn), saved as PNG and left open for display.

Every function draws one figure, saves it to ``path`` (folders created) and returns the
path; in a notebook the figure also shows inline.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from common.report.presentation import pct, percent_axis

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


def training_curves(runs: list, path) -> Path:
    """Loss and accuracy per epoch (train dashed, validation solid) for each run
    (:class:`common.results.contract.Run`)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.2))
    palette = sns.color_palette(n_colors=max(1, len(runs)))
    for colour, run in zip(palette, runs):
        h = run.history
        epochs = np.arange(1, len(h.loss) + 1)
        ax_loss.plot(epochs, h.loss, "--", color=colour, alpha=0.7)
        ax_loss.plot(epochs, h.val_loss, color=colour, label=run.name)
        ax_acc.plot(epochs, h.accuracy, "--", color=colour, alpha=0.7)
        ax_acc.plot(epochs, h.val_accuracy, color=colour, label=run.name)
    ax_loss.set(xlabel="époque", ylabel="perte", title="Perte (tirets : entraînement)")
    ax_acc.set(xlabel="époque", ylabel="exactitude", title="Exactitude (trait plein : validation)")
    percent_axis(ax_acc.yaxis)
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
        ax.set_title(f"vrai : {_short(t, 22)}\nprédit : {_short(p, 22)} ({pct(pr, 0)})",
                     fontsize=7, color=RIGHT if t == p else WRONG)
    return _save(fig, path)


def class_counts(counts, path) -> Path:
    """Histogram of the number of images per class: one bar per count when they span
    few values (every class of the same size: one bar), else 20 bins; whole-number ticks."""
    from matplotlib.ticker import MaxNLocator

    counts = np.asarray(counts)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    few = counts.max() - counts.min() < 20
    sns.histplot(counts, discrete=True, ax=ax) if few else sns.histplot(counts, bins=20, ax=ax)
    if few:
        ax.set_xlim(counts.min() - 5, counts.max() + 5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
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


def comparison(ours, reference: dict, titles: dict, chance: dict, path) -> Path:
    """Test top-1 of every run, grouped by experiment: one bar per run (ours), the 2022
    figure of the same configuration as a marker on it (diamond: test, circle: validation,
    as 2022 measured it), and each experiment's chance level as a dashed line.

    ``ours``: DataFrame with ``notebook``, ``run``, ``test_accuracy``; ``reference``:
    notebook -> list of {run, value, split}; ``titles``: notebook -> label; ``chance``:
    notebook -> 1 / number of classes.
    """
    from matplotlib.lines import Line2D

    groups = [(nb, title, ours[ours["notebook"] == nb]) for nb, title in titles.items()]
    groups = [g for g in groups if len(g[2])]
    height = sum(len(g[2]) for g in groups) * 0.32 + len(groups) * 0.5 + 1.2
    fig, ax = plt.subplots(figsize=(8.5, height))
    y, ticks, labels = 0.0, [], []
    palette = sns.color_palette(n_colors=max(1, len(groups)))
    for (nb, title, rows), colour in zip(groups, palette):
        refs = {name: r for r in reference.get(nb, []) for name in r.get("ours", [r["run"]])}
        top = y
        for r in rows.itertuples():
            ax.barh(y, r.test_accuracy, color=colour, height=0.7)
            ax.text(r.test_accuracy + 0.01, y, pct(r.test_accuracy), va="center", fontsize=7)
            ref = refs.get(r.run)
            if ref:
                ax.plot(ref["value"], y, "D" if ref["split"] == "test" else "o",
                        color="black", markersize=5)
            ticks.append(y)
            labels.append(r.run)
            y += 1
        if nb in chance:
            ax.plot([chance[nb]] * 2, [top - 0.45, y - 0.55], "--", color="#57606a", lw=1)
        ax.text(1.0, top - 0.75, title, ha="right", va="center", fontsize=8,
                fontweight="bold", color=colour)
        y += 0.8
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    percent_axis(ax.xaxis)
    ax.set_xlabel("exactitude top-1 sur le test")
    ax.legend(handles=[
        Line2D([], [], marker="D", color="black", ls="", label="2022, test"),
        Line2D([], [], marker="o", color="black", ls="", label="2022, validation"),
        Line2D([], [], ls="--", color="#57606a", label="hasard")],
        loc="lower right", fontsize=7)
    return _save(fig, path)
