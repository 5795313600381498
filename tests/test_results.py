"""Unit tests of common.results: the metrics of a run and the weights shown in tables."""

import numpy as np
import pytest
from pydantic import ValidationError

from common.report import presentation
from common.results import metrics, records
from common.models.origin import weights_info


def test_metrics_of_two_and_of_many_classes():
    y = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    m = metrics.classification_metrics(y, probs)
    assert m["test_accuracy"] == m["test_top5_accuracy"] == pytest.approx(0.5)
    y = np.array([0, 1, 2, 3, 4, 5, 6])
    probs = np.eye(7)[[0, 1, 2, 3, 4, 5, 0]] + np.linspace(0, 0.5, 7)  # last one: 6 is 2nd
    m = metrics.classification_metrics(y, probs)
    assert m["test_accuracy"] == pytest.approx(6 / 7)
    assert m["test_top5_accuracy"] == pytest.approx(1.0)
    assert 0 < m["test_macro_f1"] < 1


@pytest.mark.parametrize("weights,shown", [
    (weights_info("random-init", pretrained=False), "aléatoires"),
    (weights_info("random-init", pretrained=False, requested="x/y",
                          reason="pretrained unavailable: hub unreachable (x)"), "aléatoires*"),
    (weights_info("pretrained-here", pretrained=False, classes=196,
                          **{"from": "01_vit_scratch/improved-hybrid"}), "pré-entraîné ici"),
    (weights_info("google/vit-base-patch16-224-in21k", pretrained=True),
     "ImageNet-21k"),
    (weights_info("facebook/deit-tiny-patch16-224", pretrained=True),
     "deit-tiny-patch16-224"),
    (weights_info("stand-in", pretrained=False, reason="dry run: x"), "substitut"),
])
def test_short_weights(weights, shown):
    assert presentation.short_weights(weights) == shown
    assert records.Weights.model_validate(weights).model_dump() == weights


@pytest.mark.parametrize("weights,where", [
    ("random-init", ()),
    ({"source": "", "pretrained": False, "reason": None}, ("source",)),
    ({"source": "x", "pretrained": "yes", "reason": None}, ("pretrained",)),
    ({"source": "x", "pretrained": True, "reason": 3}, ("reason",)),
])
def test_weights_record_is_checked(weights, where):
    with pytest.raises(ValidationError) as err:
        records.Weights.model_validate(weights)
    assert [e["loc"] for e in err.value.errors()] == [where]


def test_weights_legend_shows_its_labels_in_italics_in_html_and_typst():
    """Each label in italics, the asterisk that ends « aléatoires* » shown, not taken for a mark
    of emphasis (pandoc reads the report's Markdown for both the HTML and the PDF)."""
    import pypandoc

    legend = presentation.weights_legend(["aléatoires*", "aléatoires", "aléatoires*"])
    html = pypandoc.convert_text(legend, "html", format="markdown")
    assert "<em>aléatoires</em> :" in html and "<em>aléatoires*</em> :" in html
    assert html.count("*") == 1, html
    typst = pypandoc.convert_text(legend, "typst", format="markdown")
    assert "#emph[aléatoires]" in typst and "#emph[aléatoires\\*]" in typst
    assert typst.count("*") == 1, typst


def test_numbers_are_french():
    assert presentation.pct(0.337) == "33,7\u00a0%"
    assert presentation.pct(0.1, 0) == "10\u00a0%"
    assert presentation.number(4880) == "4\u202f880"
    assert presentation.number(1234567.891, 2) == "1\u202f234\u202f567,89"
    assert presentation.interval([0.246, 0.442]) == "24,6–\u206044,2\u00a0%"
    assert presentation.points(-0.012) == "1,2"


def test_wilson_interval():
    low, high = metrics.wilson(29, 86)
    assert low == pytest.approx(0.2462, abs=1e-4) and high == pytest.approx(0.4422, abs=1e-4)
    assert metrics.wilson(0, 10)[0] == pytest.approx(0)
    assert metrics.wilson(10, 10)[1] == pytest.approx(1)
    assert not hasattr(metrics, "overlap")  # no tie is read from overlapping intervals


def test_per_class_table_shows_the_extremes_and_says_so():
    import numpy as np

    labels = {i: (i + 1, f"Car {i}") for i in range(30)}
    y = np.repeat(np.arange(30), 2)
    probs = np.eye(30)[np.where(np.arange(60) % 3 == 0, (y + 1) % 30, y)]
    report = presentation.per_class_report(y, probs, labels)
    text = presentation.per_class_table(report, extremes=10).data
    assert "Les 10 classes au meilleur F1, puis les 10 au plus faible, sur 30" in text
    assert text.count("\n|") == 1 + 10 + 1 + 10 + 2  # separator, best, …, worst, averages


def test_patches_caption_follows_the_configuration():
    from types import SimpleNamespace

    run = SimpleNamespace(name="72px-patch6", network=SimpleNamespace(image_size=72, patch_size=6))
    assert presentation.patches_markdown(run) == (
        "Image de 72\u00a0px, patchs de 6\u00a0px (configuration *72px-patch6*) : "
        "12 × 12 = 144 patchs.")


def test_class_counts_of_equal_classes_has_whole_number_ticks(tmp_path, monkeypatch):
    """Classes of the same size (the generated data): one bar, whole-number ticks, not a
    fraction of an image."""
    import matplotlib.pyplot as plt

    from common.report import figures

    shown = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path: shown.setdefault("fig", fig))
    figures.class_counts(np.full(12, 20), tmp_path / "c.png")
    ax = shown["fig"].axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert [p.get_height() for p in ax.patches if p.get_height()] == [12]
    plt.close(shown["fig"])


def test_task_sentence_of_classes_of_one_size():
    dataset = records.Dataset(
        root="/data", split_sizes={"train": 154, "val": 38, "test": 48},
        split={"seed": 0, "val_fraction": 0.15, "test_fraction": None},
        test_set={"images": 48, "fingerprint": "abc"}, synthetic=True, layout="devkit",
        task="all", class_ids=list(range(1, 13)), images_per_class=[20, 20],
        official_test=True, n_images=240, n_classes=12)
    text = presentation.task_markdown(dataset, "smoke")
    assert "(données générées), 20 images par classe. Un seul découpage" in text
    dataset.images_per_class = [24, 68]
    assert "de 24 à 68 images par classe" in presentation.task_markdown(dataset, "smoke")
