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
profile = "cpu"  # smoke, cpu or gpu: reads params/<profile>/<this notebook>.yaml
data_dir = None  # None: the file's data_dir, else CARS_DATA_DIR, else data/stanford_cars
overrides = {}  # values that replace those of the parameter file, e.g. {"seed": 7}
dry_run = False  # True: the same models and settings with tiny amounts (make ... DRY_RUN=1)

# %%
import time

from common import config, runtime

NOTEBOOK = "05_efficientnet"
started = time.time()
p = config.load(NOTEBOOK, profile, dry_run=dry_run, data_dir=data_dir, **overrides)
runtime.prepare_keras(p)  # backend (before Keras is imported), threads, precision

from IPython.display import Markdown, display

from common import efficientnet, figures, images, paths, presentation, results, splits

figure_dir = paths.figures_dir(p.outputs)
saved_figures = []

# %% [markdown]
# ## Les données
#
# Mêmes classes, même découpage reproductible que pour les ViT. Les images sont simplement
# redimensionnées au carré, comme en 2022 ; EfficientNet de Keras attend des pixels de 0 à 255
# et fait sa propre normalisation.

# %%
table, parts, labels = splits.prepare(paths.resolve(p.data_dir), p.class_ids,
                                      val_fraction=p.val_fraction,
                                      test_fraction=p.test_fraction, seed=p.seed, cap=p.cap)
if p.dry_run:
    parts = splits.limit(parts, **p.limits, seed=p.seed)

# %% [markdown]
# ## Première étape : le réseau gelé, comme en 2022

# %%
model, weights_used = efficientnet.build(len(labels), p.image_size, p.weights,
                                         allow_fallback=profile != "gpu",
                                         stand_in=p.dry_run)
display(Markdown(presentation.keras_weights_markdown(weights_used)))

# %% [markdown]
# Les poids vérifiés, nous préparons les images (décodées une fois, puis lues dans le cache).

# %%
(x_train, t_train), (x_val, t_val), (x_test, t_test) = (
    images.load_images(part, p.image_size, "squash")
    for part in (parts.train, parts.val, parts.test))
y_train, y_val, y_test = (t["label"].to_numpy() for t in (t_train, t_val, t_test))
display(Markdown(f"{len(labels)} classes ; entraînement : {len(x_train)} images, validation : "
                 f"{len(x_val)}, test : {len(x_test)}, à {p.image_size}×{p.image_size} px."))

# %%
arrays = {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}
frozen_run, best_model, frozen_probs = efficientnet.train_stage(
    model, "efficientnetb0-gele", arrays, learning_rate=p.frozen["learning_rate"],
    epochs=p.frozen["epochs"], batch_size=p.batch_size, labels=labels, weights=weights_used,
    params={"stage": "frozen backbone", "image_size": p.image_size,
            "batch_size": p.batch_size, **p.frozen},
    model_dir=paths.models_dir(p.outputs, NOTEBOOK) / "efficientnetb0-gele", seed=p.seed)

# %% [markdown]
# ## Seconde étape : dégeler le haut du réseau
#
# Nous repartons du meilleur modèle de la première étape.

# %%
model = best_model
n_trainable = efficientnet.unfreeze_top(model, p.unfrozen["layers"])
print(f"{n_trainable} couches du réseau deviennent entraînables")
unfrozen_run, _, unfrozen_probs = efficientnet.train_stage(
    model, "efficientnetb0-degele", arrays, learning_rate=p.unfrozen["learning_rate"],
    epochs=p.unfrozen["epochs"], batch_size=p.batch_size, labels=labels, weights=weights_used,
    params={"stage": "top blocks unfrozen", "image_size": p.image_size,
            "batch_size": p.batch_size, **p.unfrozen},
    model_dir=paths.models_dir(p.outputs, NOTEBOOK) / "efficientnetb0-degele", seed=p.seed)

# %% [markdown]
# ## Résultats

# %%
records = [frozen_run, unfrozen_run]
display(presentation.runs_table(records))
saved_figures.append(figures.training_curves(records, figure_dir / f"{NOTEBOOK}_curves.png"))
saved_figures.append(figures.prediction_grid({"x": x_test, "y": y_test, "probs": unfrozen_probs},
                                             labels, 15,
                                             figure_dir / f"{NOTEBOOK}_predictions.png"))

# %%
out = results.write(p, NOTEBOOK, started=started,
                    dataset=results.dataset_info(table, parts), runs=records,
                    figures=saved_figures)
gain = unfrozen_run["metrics"]["test_accuracy"] - frozen_run["metrics"]["test_accuracy"]
display(Markdown(
    f"Réseau gelé : **{presentation.pct(frozen_run['metrics']['test_accuracy'])}** sur le "
    "test ; après le dégel du haut du réseau : "
    f"**{presentation.pct(unfrozen_run['metrics']['test_accuracy'])}**, soit "
    f"{'un gain' if gain >= 0 else 'une perte'} de {presentation.points(gain)} points. "
    f"Résultats écrits dans `{out.relative_to(paths.output_root())}`."))
