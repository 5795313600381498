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
# # ViT from scratch sur 10 classes
#
# Sur les 196 classes, un ViT entraîné sans pré-entraînement n'apprenait presque rien. Nous
# avions donc réduit le problème à 10 classes (identifiants officiels 56, 79, 98, 119, 144,
# 161, 167, 171, 182 et 191), pour voir si le même modèle apprend quand chaque classe pèse
# davantage. En 2022, trois configurations avaient donné 21 % (images de 72 px, patchs de 6),
# 24,5 % (72 px, patchs de 8) et 20,9 % (144 px, patchs de 16) d'exactitude sur le test, avec
# 100 époques sur GPU.
#
# Nous rejouons ces trois configurations avec des étiquettes numérotées à partir de 0 partout
# (en 2022, celles du test ne l'étaient pas) et des ensembles disjoints par construction, puis
# nous ajoutons notre configuration améliorée, d'après *How to train your ViT?* (Steiner et
# al., 2021).

# %% tags=["parameters"]
profile = "cpu"  # smoke, cpu or gpu; gpu-dry is the gpu profile with tiny amounts
data_dir = None  # None: the study file's folder, else CARS_DATA_DIR, else data/stanford_cars
overrides = {}  # values that replace the parameter files', e.g. {"runs.*.epochs": 3}

# %%
from common.pipeline import opening

session = opening.start("02_vit_scratch_10classes", globals())

# %% [markdown]
# ## Les 10 classes
#
# Le sous-ensemble est choisi par identifiant officiel ; les étiquettes sont renumérotées de
# 0 à 9 dans l'ordre des identifiants. Le découpage est celui de toute l'étude, réduit à nos
# 10 classes : une image de notre test est donc aussi dans le test du premier notebook, et le
# réseau qu'il a entraîné ne l'a jamais vue. Le fine-tuning à 10 classes (notebook 04) est
# évalué sur ces mêmes images.

# %%
opening.show(session)

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from common.config.study import NOTEBOOKS
from common.core import paths
from common.data import images
from common.report import figures, narrative, presentation, verdicts
from common.results import provenance
from common.training import vit_runs

p, parts, labels = session.params, session.task.parts, session.task.labels
pd.DataFrame([{"étiquette": i, "identifiant officiel": cid, "classe": name,
               "images": int((session.task.table["class_id"] == cid).sum())}
              for i, (cid, name) in labels.items()]).set_index("étiquette")

# %%
sample = parts.train.groupby("class_id").head(1)
x_sample, sample = images.load_images(sample, 160, "squash", progress=False)
session.figures.append(figures.sample_images(x_sample, list(sample["class_name"]),
                                           session.figure("samples"), cols=5))

# %% [markdown]
# ## Les configurations
#
# Les premières reprennent celles de 2022 ; les autres sont les nôtres. Comme le
# recommandent Steiner et al. pour les
# petits jeux de données, nous augmentons davantage les images, lissons les étiquettes,
# renforçons la décroissance des poids, et le taux d'apprentissage monte linéairement puis
# décroît linéairement jusqu'à zéro à la fin du budget. Surtout, avec si peu d'images, le ViT
# « pur » ne trouve pas seul que des pixels voisins vont ensemble : nous remplaçons le
# découpage en patchs par quelques convolutions de pas 2, comme dans les modèles hybrides
# (R+ViT) de ce même article. Chaque case de la carte obtenue devient un jeton ; le
# transformeur qui suit est le même. Ce petit tronc convolutif permet aussi des images plus
# grandes pour un nombre de jetons raisonnable (l'attention coûte le carré de ce nombre).
#
# Mais la leçon principale de Steiner et al. est ailleurs : davantage de données vaut mieux
# que davantage d'augmentation. L'expérience reste « from scratch » (aucun poids ne vient
# d'ailleurs), mais Stanford Cars contient bien d'autres voitures que nos 10 classes, et le
# premier notebook a déjà entraîné ce même ViT hybride sur les 196 classes. Notre
# configuration part donc de ce réseau (paramètre `init_from`) : elle en garde toutes les
# couches, reçoit une nouvelle couche de sortie à 10 classes et apprend les nôtres. Le
# réseau y a appris des formes de voitures (calandres, phares, silhouettes) que nos quelques
# centaines d'images ne suffisent pas à lui enseigner. Ce pré-entraînement reste modeste à
# côté de celui du modèle fine-tuné (ImageNet-21k, des millions d'images) : la comparaison
# avec le fine-tuning garde son sens.
#
# Un profil peut ajouter une recette rapide, `fast-scratch` (le tableau des configurations
# dit si c'est le cas ici) : le même ViT hybride, mais entraîné sur nos seules 10 classes,
# sans le réseau du premier notebook. Elle répond à une autre question : en quelques
# minutes sur un processeur, que peut apprendre un ViT qui ne voit que ces quelques
# centaines d'images ? Ses réglages ont été choisis sur la validation (le journal
# `explorations/` garde chaque essai), et `benchmarks/time_to_accuracy.py` mesure le temps
# qu'il lui faut pour atteindre le meilleur score from scratch de 2022.
#
# Le point de contrôle retenu est celui de la meilleure exactitude de validation, une règle
# fixée d'avance ; le test ne sert qu'à la mesure finale, avec son intervalle de confiance.
#
# Enfin, le même modèle Keras tourne sur TensorFlow ou sur PyTorch (paramètre
# `keras_backend`). Sur PyTorch, dont les époques gardent une durée régulière, les images
# sont augmentées lot par lot, dans la boucle d'entraînement, avec kornia ; avec le
# paramètre `augmentation.in_model`, l'augmentation se fait dans le modèle.

# %%
display(Markdown(narrative.vit_budget_markdown(p, provenance.hardware()) + " "
                 + narrative.keras_setup_markdown(p)))
pd.json_normalize([run.model_dump() for run in p.runs]).set_index("name")

# %%
import keras

from common.models import vit
from common.models.origin import weights_info

records, tests = [], {}
first_notebook = paths.models_dir(p.outputs, NOTEBOOKS[session.notebook].starts_from,
                                  final=True)
for cfg in p.runs:
    print(f"=== {cfg.name}")
    data = vit_runs.load_arrays(cfg, parts, seed=p.seed)
    keras.utils.set_random_seed(p.seed)  # the same initial weights at every re-run
    if cfg.init_from:  # 01's network, with a new output layer for our 10 classes
        model, weights, stats = vit_runs.network_from(first_notebook / cfg.init_from, cfg,
                                                      labels, parts)
        display(Markdown(f"**{cfg.name}** part du réseau `{weights['from']}` du premier "
                         f"notebook, entraîné sur ses {weights['classes']} classes."))
    else:  # the keras.io ViT of the first notebook, built by the package at this size
        model = vit.build_vit(cfg.network, cfg.augmentation, len(labels), data.pixel_stats(),
                              name=cfg.name)
        weights, stats = weights_info("random-init", pretrained=False), "of the training set"
    vit_runs.compile_model(model, cfg, data)
    trained = vit_runs.fit(model, cfg, data, num_classes=len(labels), seed=p.seed,
                           model_dir=session.model_dir(cfg.name))
    tests[cfg.name] = vit_runs.evaluate(trained["model"], cfg, parts)
    records.append(vit_runs.record(cfg, trained, tests[cfg.name], weights=weights,
                                   labels=labels, splits=parts,
                                   model_dir=session.model_dir(cfg.name), stats=stats))

# %% [markdown]
# ## Résultats

# %%
display(presentation.runs_table(records))
session.figures.append(figures.training_curves(records, session.figure("curves")))

# %% [markdown]
# La matrice de confusion de la meilleure configuration (choisie sur la validation) montre
# quelles voitures le modèle confond.

# %%
best = max(records, key=lambda r: r.metrics.best_val_accuracy)
test = tests[best.name]
names = [name for _, name in labels.values()]
session.figures.append(figures.confusion(test["y"], np.argmax(test["probs"], axis=1), names,
                                       session.figure("confusion")))

# %%
session.figures.append(figures.prediction_grid(test, labels, 10, session.figure("predictions")))

# %%
out = session.write_results(records)
baseline = records[0]
display(Markdown(
    f"La configuration choisie sur la validation, **{best.name}**, atteint "
    f"**{presentation.pct(best.metrics.test_accuracy)}** sur le test (hasard : "
    f"{presentation.pct(1 / len(labels), 0)}), contre "
    f"{presentation.pct(baseline.metrics.test_accuracy)} pour la première configuration "
    "de 2022 "
    f"rejouée ici. Résultats écrits dans `{out.name}`."))
if p.target_accuracy:
    display(Markdown(verdicts.target_markdown(best, p.target_accuracy)))
