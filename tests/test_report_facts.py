"""The report says only what its results files support: every fact about the setup comes
from them, two runs are compared only on the same test images (paired difference, its
interval and McNemar's exact test), and a target is judged from the interval.

The report's text is built here from doctored results files (:func:`conftest.doctored_results`)
by running the code cells of ``report/rapport.py`` in this process, their displays captured:
no kernel, no rendering, a few seconds."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import jupytext
import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from common.core import paths
from common.report import narrative, verdicts
from common.results import comparison, records
from common.results.provenance import Machine
from conftest import doctored_results


def report_text(profile: str, monkeypatch) -> str:
    """The report's prose for ``profile``: its markdown cells and every Markdown its code
    cells display, in order (figures and tables as placeholders)."""
    import IPython.display

    shown = []

    def display(*objs, **_):
        for obj in objs:
            shown.append(getattr(obj, "data", None) if isinstance(
                obj, IPython.display.Markdown) else f"[{type(obj).__name__}]")

    monkeypatch.setattr(IPython.display, "display", display)
    nb = jupytext.read(paths.ROOT / "report" / "rapport.py")
    namespace = {"profile": profile}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            shown.append(cell.source)
        elif cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
            exec(compile(cell.source, "rapport.py", "exec"), namespace)
    return "\n\n".join(str(s) for s in shown if s)


def flat(text: str) -> str:
    return " ".join(text.replace("\u00a0", " ").replace("\u202f", " ").split())


def test_each_setup_sentence_follows_the_doctored_results(tmp_path, monkeypatch):
    doctored_results(tmp_path / "out", "cpu", classes=3, cores=3, dry_run=True,
                     official_test=False)
    text = flat(report_text("cpu-dry", monkeypatch))
    # the dry run of the profile it ran, not of "gpu"
    assert "**Exécution à blanc (dry run)** du profil `cpu`" in text
    assert "profil `gpu`" not in text
    # cores and classes from the files
    assert "3 cœurs de CPU" in text and "deux cœurs" not in text
    # the budget of 01 as its runs record it (a dry run: no claim on the images per class)
    assert ("Ici (profil `cpu`, 3 cœurs de CPU), les ViT « purs », comme ceux de 2022 "
            "(*chosen*, *other*), ont reçu de 4 à 5 époques selon la configuration.") in text
    assert "l'essentiel du budget" not in text
    assert "ViT from scratch, 3 classes" in text and "ViT fine-tuné, 3 classes" in text
    assert "EfficientNetB0, 3 classes" in text
    assert not re.search(r"\b196 classes\b", text) and "10 classes" not in text
    assert "le jeu utilisé compte 3 classes" in text
    # the copy's counts and its missing official test split, beside the quoted dataset
    assert "dans sa version publiée, 16 185 photos de 196 modèles" in text
    assert ("La copie utilisée ici compte 600 images de 3 classes ; elle n'a pas le test "
            "officiel : le test y est tiré au hasard, 20 % de chaque classe.") in text
    assert "complète" not in text
    # the checkpoint as the run records it; no claim about its size against 2022's
    assert "part de `facebook/deit-tiny-patch16-224` (5,5 millions de paramètres)" in text
    assert "Ce n'est pas le point de départ de 2022 (`google/vit-base-patch16-224-in21k`)" \
        in text
    assert "point de départ plus petit" not in text
    # the checkpoint rule read from the runs
    assert ("Le point de contrôle retenu, d'après la règle que notent les résultats : "
            "*chosen*, *other* : la meilleure exactitude de validation, à partir de "
            "l'époque 2 (époques retenues : 3, 3)") in text
    assert "une règle fixée d'avance" not in text


def test_a_complete_copy_with_the_official_test_and_2022_checkpoint(tmp_path, monkeypatch):
    doctored_results(tmp_path / "out", "cpu", classes=196, cores=1, official_test=True,
                     n_images=16185, checkpoint="google/vit-base-patch16-224-in21k")
    text = flat(report_text("cpu", monkeypatch))
    assert "La copie utilisée ici est complète : 16 185 images de 196 classes, avec le test " \
           "officiel." in text
    assert "(profil `cpu`, 1 cœur de CPU)" in text and "(test officiel du jeu)" not in text
    assert "ViT fine-tuné, 196 classes" in text
    assert "Ce n'est pas le point de départ de 2022" not in text
    assert "Exécution à blanc" not in text


def test_the_report_compares_each_pair_on_the_same_images(tmp_path, monkeypatch):
    collected = doctored_results(tmp_path / "out", "cpu",
                                 accuracies={"05_efficientnet": 0.81})
    text = flat(report_text("cpu", monkeypatch))
    conclusions = text[text.index("Nous ne comparons deux expériences"):]
    pairs = re.findall(r"- (?:Entre )?\*\*(.+?)\*\*.*? (?:fait (?:mieux|moins bien) "
                       r"(?:que |qu')|et )\*\*(.+?)\*\*.*?McNemar exact : (p [=<] \d+(?:,\d+)?)"
                       r", ajustée \(Holm, 4 comparaisons\) : p", conclusions)
    assert [(a, b) for a, b, _ in pairs] == [
        ("ViT fine-tuné, 3 classes", "ViT from scratch, 3 classes"),
        ("EfficientNetB0, 3 classes", "ViT from scratch, 3 classes"),
        ("EfficientNetB0, 3 classes", "ViT fine-tuné, 3 classes"),
        ("ViT fine-tuné, 3 classes", "ViT from scratch, 3 classes")]
    # 03 against 01: 96 right against 36 on 120 images, the same ones
    assert ("fait mieux que **ViT from scratch, 3 classes** (différence +50,0 points, IC 95 % "
            "apparié : +") in conclusions
    # 05 (81 %) and 03 (80 %) differ by one image: no difference the test can detect, which
    # is not equality
    assert ("Entre **EfficientNetB0, 3 classes** et **ViT fine-tuné, 3 classes**, pas de "
            "différence décelable sur ces images (différence +0,8 points") in conclusions
    assert "égalité" not in conclusions.replace("ne prouve pas une égalité", "")
    # the lesson reads the paired tests
    assert "Comme en 2022, la leçon principale tient" in text
    # the run shown for 01 is the one chosen on validation, not the best test score
    assert "ViT from scratch, 3 classes** : 30,0 %" in text
    assert collected["01_vit_scratch"].runs[1].metrics.test_accuracy > 0.3


def test_runs_scored_on_different_images_are_not_compared(tmp_path, monkeypatch):
    doctored_results(tmp_path / "out", "cpu", other_test=("05_efficientnet",))
    text = flat(report_text("cpu", monkeypatch))
    assert ("**EfficientNetB0, 3 classes** et **ViT from scratch, 3 classes** ont été évalués "
            "sur des images de test différentes : nous ne les comparons pas.") in text
    assert ("**EfficientNetB0, 3 classes** et **ViT fine-tuné, 3 classes** ont été évalués "
            "sur des images de test différentes") in text
    assert text.count("McNemar exact") == 2  # 03-01 and 04-02 still compared


def test_runs_that_read_their_test_images_cropped_otherwise_are_not_paired(tmp_path,
                                                                             monkeypatch):
    """The same test images, cropped on their boxes for one notebook and whole for the
    others: other inputs, so no paired comparison, and the report says why."""
    doctored_results(tmp_path / "out", "cpu", other_crop=("05_efficientnet",))
    text = flat(report_text("cpu", monkeypatch))
    assert ("**EfficientNetB0, 3 classes** et **ViT from scratch, 3 classes** ont lu leurs "
            "images de test recadrées différemment (crop bbox 0.1 contre crop squash) : ce ne "
            "sont pas les mêmes entrées, nous ne les comparons pas.") in text
    assert text.count("McNemar exact") == 2
    assert "(Holm, 2 comparaisons)" in text


# --------------------------------------------------------------------------- the statistics

def _frame(right: np.ndarray) -> pd.DataFrame:
    n = len(right)
    label = np.zeros(n, dtype=int)
    return pd.DataFrame({"label": label, "predicted": np.where(right, 0, 1),
                         "top5": "0 1"}, index=[f"im{i}" for i in range(n)])


def test_mcnemar_separates_runs_whose_intervals_overlap():
    # 200 images: a gets 120 right, b the same 120 but 16 of them: 60 % against 52 %
    a = np.arange(200) < 120
    b = a & (np.arange(200) >= 16)
    result = comparison.paired(_frame(a), _frame(b))
    assert (result["only_a"], result["only_b"], result["n"]) == (16, 0, 200)
    assert result["p_value"] == pytest.approx(binomtest(16, 16, 0.5).pvalue)
    assert result["p_value"] < 0.001 and result["separated"]
    assert result["difference"] == pytest.approx(0.08)
    low, high = result["ci95"]
    assert 0 < low < 0.08 < high < 0.2
    from common.results.metrics import wilson

    assert wilson(120, 200)[0] <= wilson(104, 200)[1]  # their intervals overlap all the same
    assert verdicts.p_value(result["p_value"]) == "p < 0,001"
    assert verdicts.p_value(0.0312) == "p = 0,031" and verdicts.p_value(1.0) == "p = 1"


def test_holm_adjusts_several_comparisons_together():
    """Holm's step-down adjustment (checked by hand): sorted p 0.005, 0.01, 0.03, 0.04 times
    4, 3, 2, 1, made non-decreasing."""
    assert comparison.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert comparison.holm([0.5, 0.9]) == [1.0, 1.0] and comparison.holm([]) == []
    a = np.arange(200) < 120
    four = comparison.paired(_frame(a), _frame(a & (np.arange(200) >= 4)))  # p = 0.125
    close = comparison.paired(_frame(a), _frame(a & (np.arange(200) >= 7)))  # p = 0.016
    assert close["separated"] and not four["separated"]
    results = comparison.compare_all([close, None, close.copy(), close.copy(), close.copy()])
    assert results[1] is None
    assert [r["comparisons"] for r in results if r] == [4] * 4
    assert all(r["p_adjusted"] == pytest.approx(min(1, 4 * close["p_value"])) for r in results if r)
    assert not any(r["separated"] for r in results if r)  # 4 x 0.016 > 5 %


def test_a_tie_and_the_interval_of_equal_runs():
    a = np.arange(100) < 50
    b = (np.arange(100) >= 2) & (np.arange(100) < 51)  # 3 discordant images
    result = comparison.paired(_frame(a), _frame(b))
    assert (result["only_a"], result["only_b"]) == (2, 1)
    assert not result["separated"] and result["p_value"] == pytest.approx(1.0)
    same = comparison.paired(_frame(a), _frame(a))
    assert same["p_value"] == 1.0 and same["difference"] == 0
    assert same["ci95"][0] <= 0 <= same["ci95"][1]


def test_newcombe_interval_agrees_with_the_wald_interval_on_many_images():
    # many images: the paired Wald interval is then good, and the two agree
    both, only_a, only_b, neither = 4000, 300, 200, 1500
    n = both + only_a + only_b + neither
    diff = (only_a - only_b) / n
    half = 1.959964 * math.sqrt(only_a + only_b - (only_a - only_b) ** 2 / n) / n
    low, high = comparison.newcombe_paired(both, only_a, only_b, neither)
    assert low == pytest.approx(diff - half, abs=1e-3)
    assert high == pytest.approx(diff + half, abs=1e-3)
    # and it is narrower than the unpaired one when the two runs succeed together
    from common.results.metrics import wilson

    (l_a, u_a), (l_b, u_b) = wilson(both + only_a, n), wilson(both + only_b, n)
    assert high - low < (u_a - l_a) + (u_b - l_b)


@pytest.mark.parametrize("ci,verdict", [((0.40, 0.55), "reached"), ((0.30, 0.399), "missed"),
                                        ((0.328, 0.535), "undecided")])
def test_target_verdict_reads_the_interval(ci, verdict):
    assert comparison.target_verdict(ci, 0.40) == verdict


def test_the_target_sentence_names_the_run_chosen_on_validation():
    run = SimpleNamespace(name="improved-hybrid", metrics=records.Metrics(
        test_accuracy=0.429, test_top5_accuracy=0.8, test_macro_f1=0.4, best_val_accuracy=0.4,
        test_accuracy_ci95=(0.328, 0.535)))
    text = flat(verdicts.target_markdown(run, 0.40))
    assert "configuration choisie sur la validation, **improved-hybrid** : 42,9 %" in text
    assert "Objectif **indécis** : l'intervalle contient la cible" in text


def test_narrative_hardware_from_the_environment():
    assert narrative.hardware(Machine(device="CPU (2 cores, x86_64)")) == "2 cœurs de CPU"
    assert narrative.hardware(Machine(device="1 GPU: NVIDIA H200", cores=16, gpus=1)) \
        == "1 GPU : NVIDIA H200"
    assert math.isclose(comparison.ALPHA, 0.05)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu", "gpu-dry"])
@pytest.mark.parametrize("notebook", ["01_vit_scratch", "02_vit_scratch_10classes"])
def test_a_scratch_notebook_tells_its_budget_from_its_parameters(notebook, profile):
    """What the ViT-from-scratch notebooks say of their budget, backend and hardware comes
    from their parameters and the machine, whatever the profile."""
    from common.config import loading

    p = loading.load(notebook, profile)
    machine = Machine(device="CPU (3 cores, x86_64)", cores=3, gpus=0)
    text = flat(narrative.vit_budget_markdown(p, machine))
    assert text.startswith(f"Ici (profil `{p.outputs}`, 3 cœurs de CPU), ")
    for run in p.runs:
        assert f"*{run.name}*" in text
    epochs = sorted({r.epochs for r in p.runs})
    assert f"{epochs[-1]} époque" in text
    caps = {r.cap_per_class for r in p.runs} - {None}
    assert all(f"au plus {c} image" in text for c in caps)
    setup = flat(narrative.keras_setup_markdown(p))
    backend = {"torch": "PyTorch", "tensorflow": "TensorFlow"}[p.keras_backend]
    assert f"Keras tourne ici sur {backend}" in setup
    assert ("dans le modèle" in setup) == any(r.augmentation.in_model for r in p.runs)


def test_the_budget_sentence_follows_overrides_and_gpus():
    from common.config import loading

    p = loading.load("01_vit_scratch", "cpu", **{"runs.*.epochs": 3, "runs.*.cap_per_class": 5})
    text = flat(narrative.vit_budget_markdown(p, Machine(device="1 GPU: A100", gpus=1)))
    assert "(profil `cpu`, 1 GPU : A100)" in text
    assert text.count("au plus 5 images par classe") == 2 and text.count("3 époques") == 2
    assert "notre ViT hybride (*improved-hybrid*) reçoit" in text


def test_notebook_prose_types_no_machine_fact():
    """The notebooks' Markdown cells state no core count nor a profile's budget by hand:
    those come from the parameters and the machine, in computed sentences."""
    for path in sorted((paths.ROOT / "notebooks").glob("[0-9]*.py")):
        prose = " ".join(c.source for c in jupytext.read(path).cells
                         if c.cell_type == "markdown")
        prose = re.sub(r"\s+", " ", prose)
        assert not re.search(r"cœurs?\b", prose), path.name
        assert not re.search(r"[Ll]e profil `cpu` (ajoute|utilise)", prose), path.name


def test_the_report_budget_of_01_separates_our_hybrid_from_the_pure_vits():
    def run(name, epochs, cap, stem=None):  # the fields the sentence reads
        return SimpleNamespace(name=name, params={"cap_per_class": cap,
                                                  "network": {"stem_channels": stem}},
                               history=SimpleNamespace(loss=[1.0] * epochs))

    payload = SimpleNamespace(
        profile="cpu", dry_run=False, environment=Machine(device="CPU (2 cores, x86_64)",
                                                          cores=2),
        runs=[run("a", 6, 8), run("b", 1, 8), run("hybrid", 70, None, [16, 32])])
    assert flat(narrative.budget_markdown(payload)) == (
        "Ici (profil `cpu`, 2 cœurs de CPU), les ViT « purs », comme ceux de 2022 (*a*, *b*), "
        "ont reçu au plus 8 images par classe pour l'entraînement comme pour la validation, "
        "et de 1 à 6 époques selon la configuration ; notre ViT hybride (*hybrid*) a reçu "
        "toutes les images d'entraînement et de validation, et 70 époques. Le résultat des "
        "ViT « purs » mesure ce budget.")


# claims about the setup or the method that only the results can back: the report computes
# them (common.report.narrative) or does not make them
SETUP_CLAIMS = re.compile(
    r"aucune image|jamais sur le test|disjoint|recadr|boîte englobante|validation seule|"
    r"même découpage|n'a servi|mêmes entrées|aucun chiffre de test", re.IGNORECASE)


def fixed_claims(source: str) -> list[str]:
    """The claims about splits, choices or crops in the markdown cells of a report source."""
    notebook = jupytext.reads(source, fmt="py:percent")
    return [m.group(0) for cell in notebook.cells if cell.cell_type == "markdown"
            for m in SETUP_CLAIMS.finditer(cell.source)]


def test_the_reports_fixed_prose_makes_no_claim_the_results_do_not_back():
    source = (paths.ROOT / "report" / "rapport.py").read_text(encoding="utf-8")
    assert fixed_claims(source) == []
    planted = source.replace("# ## L'historique des choix\n", "# ## L'historique des choix\n#\n"
                             "# Les choix ont tous été faits sur la validation seule.\n", 1)
    assert fixed_claims(planted) == ["validation seule"]


def test_the_setup_sentences_about_splits_crops_and_starting_networks_follow_the_results(
        tmp_path, monkeypatch):
    collected = doctored_results(tmp_path / "out", "cpu")
    text = flat(report_text("cpu", monkeypatch))
    assert ("Les résultats de 01, 02, 03, 04, 05 ne notent pas la vérification que ces ensembles "
            "sont disjoints.") in text  # the doctored files do not record it
    assert "Toutes les expériences lisent chaque image de la même façon" not in text
    for payload in collected.values():
        payload.dataset.split.disjoint = True
        payload.dataset.crop = records.Crop(mode="squash", images_with_box=0, images=600)
    assert "chaque notebook l'a vérifié" in narrative.split_markdown(collected)
    assert ("Toutes les expériences lisent chaque image de la même façon : l'image entière "
            "ramenée au carré, comme en 2022") in narrative.split_markdown(collected)
    collected["05_efficientnet"].dataset.crop = records.Crop(mode="bbox", margin=0.1,
                                                             images_with_box=600, images=600)
    assert "05 : l'image recadrée sur sa boîte englobante" in narrative.split_markdown(collected)
    # 02 from 01's network: the same split, read from both files, or a warning
    ten = collected["02_vit_scratch_10classes"]
    assert narrative.starting_network_markdown(collected) is None  # no such run
    ten.runs[0].weights = records.Weights(source="pretrained-here", pretrained=False)
    same = {"data": "d1", "split": "s1"}
    ten.dataset.split.fingerprints = same
    collected["01_vit_scratch"].dataset.split.fingerprints = dict(same)
    assert "aucune image de ce test n'a servi à l'entraîner" in \
        narrative.starting_network_markdown(collected)
    collected["01_vit_scratch"].dataset.split.fingerprints = {"data": "d1", "split": "s2"}
    assert narrative.starting_network_markdown(collected).startswith(
        "Les résultats ne permettent pas de vérifier")
