# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (vit-cars-poc)
#     language: python
#     name: vit-cars-poc
# ---

# %% [markdown]
# # Fine-tuning d'un ViT pré-entraîné sur 10 classes
#
# Pour comparer le fine-tuning à nos ViT entraînés from scratch, nous reprenons les 10
# classes du deuxième notebook (identifiants officiels 56, 79, 98, 119, 144, 161, 167, 171,
# 182 et 191), équilibrées, avec le même point de départ que sur les 196 classes : un ViT
# pré-entraîné sur ImageNet-21k, affiné avec le `Trainer` de Hugging Face.
#
# En 2022, ce modèle atteignait environ **91 %** d'exactitude sur la validation, contre
# 21 à 24,5 % pour nos ViT from scratch sur les mêmes classes. Nous l'avions aussi essayé
# sur 10 photos de voitures trouvées en dehors du jeu de données : il en reconnaissait
# **8 sur 10**. Ici, ces photos extérieures sont remplacées par 10 photos de l'ensemble de
# test, une par classe, que le modèle n'a jamais vues.

# %% tags=["parameters"]
profile = "cpu"  # smoke, cpu or gpu; gpu-dry is the gpu profile with tiny amounts
data_dir = None  # None: the study file's folder, else CARS_DATA_DIR, else data/stanford_cars
overrides = {}  # values that replace the parameter files', e.g. {"runs.*.epochs": 3}

# %%
from common.pipeline import opening

session = opening.start("04_vit_finetune_10classes", globals())

# %% [markdown]
# ## Les 10 classes
#
# Les étiquettes sont renumérotées à partir de 0 dans l'ordre des identifiants officiels. Le
# découpage est celui de toute l'étude, réduit à nos 10 classes : le test est exactement
# celui du deuxième notebook (ViT from scratch sur les mêmes classes). Les classes sont
# équilibrées (réduites au nombre d'images de la plus petite) pour l'entraînement et la
# validation ; le test garde toutes ses images.

# %%
opening.show(session)

# %%
import pandas as pd
from IPython.display import Markdown, display

from common.config.study import REFERENCE_2022
from common.data import images
from common.report import attention_figure, figures, presentation
from common.training import finetune_runs

pd.DataFrame([{"étiquette": i, "identifiant officiel": cid, "classe": name}
              for i, (cid, name) in session.task.labels.items()]).set_index("étiquette")

# %% [markdown]
# ## Les poids pré-entraînés
#
# Comme pour les 196 classes, nous vérifions d'abord que les poids pré-entraînés sont
# disponibles. Le profil `gpu` s'arrête ici s'ils ne le sont pas ; les profils `smoke` et
# `cpu` continuent avec un petit ViT initialisé au hasard, et le disent. Suit le modèle,
# module par module, avec sa nouvelle tête, une sortie par classe.

# %%
opening.show_weights(session)

# %%
p, parts, labels = session.params, session.task.parts, session.task.labels
sample = session.task.table.groupby("class_id").head(1)
x_sample, sample = images.load_images(sample, 160, *session.task.parts.crop, progress=False)
session.figures.append(figures.sample_images(x_sample, list(sample["class_name"]),
                                           session.figure("samples"), cols=5))

# %% [markdown]
# ## Le fine-tuning
#
# La même méthode que pour les 196 classes : nouvelle tête de classification, processeur
# d'images du point de départ, recadrage aléatoire et retournement horizontal pendant
# l'entraînement, évaluation sur la validation à chaque époque, meilleure époque gardée. Le
# tableau donne les réglages du profil.

# %%
pd.DataFrame([run.model_dump() for run in p.runs]).set_index("name")

# %%
records, tests = session.fit_runs(lambda run: finetune_runs.fit_config(
    run, parts, labels, p, model_dir=session.model_dir(run.name), processes=session.processes))

# %% [markdown]
# ## Résultats

# %%
display(presentation.runs_table(records))
session.figures.append(figures.training_curves(records, session.figure("curves")))
best = max(records, key=lambda r: r.metrics.best_val_accuracy)
test = tests[best.name]
# the 2022 number, as quoted once for the whole project (validation accuracy)
quoted = REFERENCE_2022[session.notebook][0]
metrics = best.metrics
display(Markdown(
    f"Meilleure exactitude de validation : **{presentation.pct(metrics.best_val_accuracy)}** "
    f"(2022 : {presentation.pct(quoted['value'], 0)}). Sur le test : "
    f"**{presentation.pct(metrics.test_accuracy)}**, F1 macro "
    f"{presentation.pct(metrics.test_macro_f1)}, pour un hasard à "
    f"{presentation.pct(1 / len(labels), 0)}. Entraînement : "
    f"{presentation.number(best.train_seconds)} s, "
    f"{presentation.number(best.train_images_per_second, 1)} images/s (poids de départ : "
    f"`{best.weights.source}`)."))

# %% [markdown]
# L'exactitude d'entraînement des courbes est mesurée à la fin de chaque époque, sans
# augmentation, sur un sous-ensemble fixe d'images d'entraînement ; la perte d'entraînement
# est la moyenne sur les lots de l'époque.
#
# La matrice de confusion montre quelles voitures le modèle confond encore, et le rapport
# de classification donne la précision, le rappel et le F1 de chaque classe.

# %%
names = [name for _, name in labels.values()]
session.figures.append(figures.confusion(test["y"], test["probs"].argmax(axis=1), names,
                                       session.figure("confusion")))

# %%
report = presentation.per_class_report(test["y"], test["probs"], labels)
display(presentation.per_class_table(report))

# %% [markdown]
# ## Dix photos jamais vues
#
# Comme en 2022, dix photos, une par classe, avec la classe prédite (en vert quand elle est
# juste, en rouge sinon).

# %%
session.figures.append(figures.prediction_grid(test, labels, p.n_predictions,
                                             session.figure("predictions")))
shown = figures.one_per_class(test["y"], p.n_predictions)
right = int((test["probs"][shown].argmax(axis=1) == test["y"][shown]).sum())
display(Markdown(f"**{right} photos sur {len(shown)}** sont bien classées (2022 : "
                 f"{quoted['note']}, des photos prises hors du jeu de données)."))

# %% [markdown]
# ## Où regarde le modèle ?
#
# L'*attention rollout* (Abnar et Zuidema, 2020) combine l'attention de toutes les couches
# (têtes moyennées, identité ajoutée pour la connexion résiduelle, lignes normalisées,
# produit des couches) ; la ligne du jeton de classification montre les patchs qui pèsent
# le plus dans la décision (✓ : photo bien classée, ✗ : mal classée).

# %%
session.figures.append(attention_figure.attention_examples(
    test, labels, p.n_attention, session.figure("attention")))

# %%
out = session.write_results(records)
display(Markdown(f"Résultats écrits dans `{out.name}`."))
