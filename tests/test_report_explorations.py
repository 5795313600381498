"""The report's section on the exploration journals: built from the CSV files alone."""

from __future__ import annotations

from common.report.explorations import explorations_markdown, explorations_table
from common.results import journal


def test_the_section_reads_the_journals(tmp_path):
    assert explorations_markdown(tmp_path) == "Aucun journal d'exploration dans ce dépôt."
    assert explorations_table(tmp_path) == ""
    path = tmp_path / "02_vit_scratch_10classes.csv"
    base = {"date": "d", "commit": "c", "notebook": "02_vit_scratch_10classes",
            "run": "fast-scratch", "val_images": 52, "train_seconds": 120.0}
    for seed, acc in enumerate([0.25, 0.35, 0.3]):
        journal.append(path, {**base, "settings": "{}", "seed": seed, "val_accuracy": acc})
    journal.append(path, {**base, "settings": journal.settings_text({"network.image_size": 64}),
                          "seed": 0, "val_accuracy": 0.2, "train_seconds": 60.0})
    text = explorations_markdown(tmp_path)
    assert ("**Notebook `02_vit_scratch_10classes`.** Le journal compte 4 entraînements, 2 "
            "réglages essayés") in text
    assert ("notés sur 52 images de validation (une image y vaut 1,9 point), jamais sur le "
            "test") in text
    assert text.endswith("Meilleure moyenne de validation : fast-scratch, réglages du fichier "
                         "(30,0\u00a0%).")
    table = explorations_table(tmp_path)
    assert ("| 02 | fast-scratch : réglages du fichier | 3 | 30,0\u00a0% (25\u00a0%–35\u00a0%) "
            "| 120 |") in table
    assert "| 02 | fast-scratch : `network.image_size` 64 | 1 | 20,0\u00a0% | 60 |" in table


def test_the_section_says_what_the_params_file_keeps_when_it_is_not_the_best(tmp_path):
    path = tmp_path / "02_vit_scratch_10classes.csv"
    base = {"date": "d", "commit": "c", "notebook": "02_vit_scratch_10classes",
            "run": "fast-scratch", "val_images": 52, "seed": 0}
    journal.append(path, {**base, "settings": journal.settings_text({"epochs": 150}),
                          "val_accuracy": 0.385, "train_seconds": 523.0})
    journal.append(path, {**base, "settings": "{}", "val_accuracy": 0.365,
                          "train_seconds": 254.0})
    text = explorations_markdown(tmp_path)
    assert ("Meilleure moyenne de validation : fast-scratch, `epochs` 150 (38,5\u00a0%). Le "
            "fichier de paramètres en retient d'autres : 36,5\u00a0% de validation en moyenne "
            "(graines : 36,5\u00a0% à 36,5\u00a0%, contre 38,5\u00a0% à 38,5\u00a0%), "
            "en 254 s d'entraînement contre 523 s.") in text


def test_overlapping_seeds_are_shown_not_read_as_a_tie_and_a_second_journal_is_named(
        tmp_path):
    base = {"date": "d", "commit": "c", "notebook": "02_vit_scratch_10classes",
            "run": "improved-hybrid", "val_images": 52, "train_seconds": 200.0}
    path = tmp_path / "02_vit_scratch_10classes.csv"
    for seed, (kept, other) in enumerate([(0.538, 0.538), (0.5, 0.519), (0.538, 0.538)]):
        journal.append(path, {**base, "settings": "{}", "seed": seed, "val_accuracy": kept})
        journal.append(path, {**base, "settings": journal.settings_text({"head_from_init": True}),
                              "seed": seed, "val_accuracy": other})
    journal.append(tmp_path / "02_vit_scratch_10classes_from-other-01.csv",
                   {**base, "settings": "{}", "seed": 0, "val_accuracy": 0.4})
    text = explorations_markdown(tmp_path)
    assert ("de validation en moyenne (graines : 50,0\u00a0% à 53,8\u00a0%, contre "
            "51,9\u00a0% à 53,8\u00a0%), en 200 s") in text
    assert "égalité" not in text
    assert ("**Notebook `02_vit_scratch_10classes`, journal à part `from-other-01`.** Le "
            "journal compte 1 entraînement, 1 réglage essayé (") in text
    table = explorations_table(tmp_path)
    assert "| 02 (from-other-01) | improved-hybrid : réglages du fichier | 1 |" in table
    assert "| 02 | improved-hybrid : réglages du fichier | 3 |" in table
    assert "| 02 | improved-hybrid : `head_from_init` true | 3 |" in table  # YAML's words
