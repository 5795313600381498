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
# # EfficientNetB0 : l'apprentissage par transfert avec un réseau convolutif
#
# Pour situer les Vision Transformers, nous avions aussi essayé un réseau convolutif
# pré-entraîné sur ImageNet, EfficientNetB0, en suivant l'exemple keras.io « Image
# classification via fine-tuning with EfficientNet » : le réseau est gelé, seule une nouvelle
# tête de classification est entraînée, avec l'augmentation de données de l'exemple (rotations,
# translations, retournements, contraste). En 2022, ce modèle plafonnait vers 32 %
# d'exactitude en validation sur les 196 classes.
#
# Nous rejouons cette première étape, puis nous ajoutons une seconde étape : les derniers
# blocs du réseau sont dégelés et entraînés avec un petit taux d'apprentissage, les couches de
# normalisation par lots restant gelées (sinon leurs statistiques, apprises sur ImageNet, sont
# bousculées par nos petits lots).

# %% tags=["parameters"]
profile = "cpu"  # smoke, cpu or gpu; gpu-dry is the gpu profile with tiny amounts
data_dir = None  # None: the study file's folder, else CARS_DATA_DIR, else data/stanford_cars
overrides = {}  # values that replace the parameter files', e.g. {"frozen.epochs": 3}

# %%
from common.pipeline import opening

session = opening.start("05_efficientnet", globals())

# %% [markdown]
# ## Les données
#
# Mêmes classes, même découpage que pour les ViT : le test est celui des notebooks 01 et 03,
# image par image. Un éventuel plafond d'images par classe ne réduit que l'entraînement et la
# validation. Les images sont simplement redimensionnées au carré, comme en 2022 ;
# EfficientNet de Keras attend des pixels de 0 à 255 et fait sa propre normalisation.

# %%
opening.show(session)

# %%
from IPython.display import Markdown, display

from common.data import images, splits
from common.models import efficientnet
from common.report import figures, presentation
from common.training.efficientnet_stages import train_stage

p, labels = session.params, session.task.labels
parts = session.task.budget(p.cap_per_class, seed=p.seed)

# %% [markdown]
# ## Première étape : le réseau gelé, comme en 2022

# %%
model, weights_used = efficientnet.build(len(labels), p.image_size, p.weights,
                                         allow_fallback=p.profile != "gpu",
                                         stand_in=p.dry_run, augment_in_model=p.augment_in_model)
display(Markdown(presentation.keras_weights_markdown(weights_used)))

# %% [markdown]
# Les poids vérifiés, nous préparons les images (décodées une fois, puis lues dans le cache).

# %%
(x_train, t_train), (x_val, t_val), (x_test, t_test) = (
    images.load_images(part, p.image_size, *parts.crop)
    for part in (parts.train, parts.val, parts.test))
y_train, y_val, y_test = (t["label"].to_numpy() for t in (t_train, t_val, t_test))
display(Markdown(f"{len(labels)} classes ; entraînement : {len(x_train)} images, validation : "
                 f"{len(x_val)}, test : {len(x_test)}, à {p.image_size}×{p.image_size} px."))

# %%
arrays = {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}
test_images = splits.row_ids(t_test)
frozen_run, best_model, frozen_probs = train_stage(
    model, "efficientnetb0-gele", arrays, p.frozen, p, labels=labels, weights=weights_used,
    model_dir=session.model_dir("efficientnetb0-gele"), test_images=test_images, seed=p.seed)

# %% [markdown]
# ## Seconde étape : dégeler le haut du réseau
#
# Nous repartons du meilleur modèle de la première étape.

# %%
model = best_model
n_trainable = efficientnet.unfreeze_top(model, p.unfrozen.layers)
print(f"{n_trainable} couches du réseau deviennent entraînables")
unfrozen_run, _, unfrozen_probs = train_stage(
    model, "efficientnetb0-degele", arrays, p.unfrozen, p, labels=labels, weights=weights_used,
    model_dir=session.model_dir("efficientnetb0-degele"), test_images=test_images, seed=p.seed)

# %% [markdown]
# ## Résultats

# %%
records = [frozen_run, unfrozen_run]
display(presentation.runs_table(records))
session.figures.append(figures.training_curves(records, session.figure("curves")))
session.figures.append(figures.prediction_grid({"x": x_test, "y": y_test, "probs": unfrozen_probs},
                                             labels, 15, session.figure("predictions")))

# %%
out = session.write_results(records)
gain = unfrozen_run.metrics.test_accuracy - frozen_run.metrics.test_accuracy
display(Markdown(
    f"Réseau gelé : **{presentation.pct(frozen_run.metrics.test_accuracy)}** sur le "
    "test ; après le dégel du haut du réseau : "
    f"**{presentation.pct(unfrozen_run.metrics.test_accuracy)}**, soit "
    f"{'un gain' if gain >= 0 else 'une perte'} de {presentation.points(gain)} points. "
    f"Résultats écrits dans `{out.name}`."))
