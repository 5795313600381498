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
# # ViT entraîné from scratch sur les 196 classes de Stanford Cars
#
# Première expérience de notre preuve de concept : entraîner, sans aucun pré-entraînement, le
# Vision Transformer de l'exemple keras.io « Image classification with Vision Transformer »
# sur les 196 classes de voitures (marque, modèle, année) de Stanford Cars.
#
# En 2022, nous avions essayé trois configurations : images de 32 px découpées en patchs de
# 6 px, images de 72 px en patchs de 6 px, puis 16 couches de transformer au lieu de 8. Toutes
# donnaient environ 1 % d'exactitude sur le test. Ce chiffre était en partie un artefact : les
# étiquettes de test étaient restées numérotées de 1 à 196, alors que celles d'entraînement
# avaient été décalées de 0 à 195. Chaque image de test était donc comparée à la classe
# voisine. Ici, toutes les étiquettes sont numérotées à partir de 0, une fois pour toutes, par
# le module `common.data`, et une vérification le prouve plus bas.
#
# Nous rejouons les trois configurations, puis nous ajoutons une configuration « améliorée »
# guidée par l'article que citait déjà notre rapport, *How to train your ViT? Data,
# Augmentation, and Regularization in Vision Transformers* (Steiner et al., 2021).

# %% tags=["parameters"]
profile = "cpu"  # smoke, cpu or gpu; gpu-dry is the gpu profile with tiny amounts
data_dir = None  # None: the study file's folder, else CARS_DATA_DIR, else data/stanford_cars
overrides = {}  # values that replace the parameter files', e.g. {"runs.*.epochs": 3}

# %%
from common.pipeline import opening

session = opening.start("01_vit_scratch", globals())

# %% [markdown]
# ## Les données
#
# Le module `common.data` lit Stanford Cars quelle que soit son organisation (devkit officiel,
# archive tout-en-un, ou un dossier par classe) et en fait une table : une ligne par image, avec
# l'identifiant officiel de la classe (1 à 196), l'étiquette numérotée à partir de 0, le nom de
# la classe et la boîte englobante. Les ensembles d'entraînement, de validation et de test sont
# tirés une seule fois pour toute l'étude, stratifiés par classe, avec une graine fixe ; le
# test officiel est utilisé quand il est présent. Les notebooks 03 et 05 sont évalués sur ces
# mêmes images de test, et les notebooks à 10 classes sur leur part de ce test. En 2022, nous
# déplacions des images à la main entre les dossiers, si bien que des images de test se
# retrouvaient parfois dans l'entraînement : ici les trois ensembles sont disjoints par
# construction, et c'est vérifié.

# %%
opening.show(session)

# %%
import pandas as pd

from common.data import images
from common.report import figures, narrative, presentation
from common.results import provenance
from common.training import vit_runs

for part in (session.task.parts.train, session.task.parts.val, session.task.parts.test):
    assert part["label"].between(0, len(session.task.labels) - 1).all()  # 0-based everywhere
p, task = session.params, session.task
table, parts, labels = task.table, task.parts, task.labels
session.figures.append(figures.class_counts(table["class_id"].value_counts(),
                                          session.figure("class_counts")))

# %%
sample = parts.train.groupby("class_id").head(1).head(12)
x_sample, sample = images.load_images(sample, 160, "squash", progress=False)
session.figures.append(figures.sample_images(x_sample, list(sample["class_name"]),
                                           session.figure("samples")))

# %% [markdown]
# ## Le découpage en patchs
#
# Un ViT ne voit pas des pixels mais une suite de patchs : l'image est découpée en carrés de
# même taille, chaque carré est aplati puis projeté dans un espace de dimension fixe, et une
# position apprise lui est ajoutée (`PatchEncoder`). Voici une image découpée comme dans la
# deuxième configuration.

# %%
from IPython.display import Markdown, display

first = p.runs[min(1, len(p.runs) - 1)]
display(Markdown(presentation.patches_markdown(first)))
x_patch, _ = images.load_images(parts.train.head(1), first.network.image_size, "squash",
                                progress=False)
session.figures.append(figures.patches(x_patch[0], first.network.patch_size,
                                        session.figure("patches")))

# %% [markdown]
# ## Les configurations essayées
#
# L'architecture est celle de keras.io : patchs, encodage de position appris, blocs de
# transformer (normalisation de couche, attention multi-têtes, MLP à activation GELU,
# connexions résiduelles), normalisation finale et moyenne sur les patchs, puis une tête MLP.
# La normalisation des pixels fait partie du modèle, si bien qu'un modèle enregistré prend
# directement une image RVB. L'augmentation de données (retournements, rotations, zooms) se
# fait, elle, lot par lot avant le modèle : dans le pipeline `tf.data` sur TensorFlow, dans
# la boucle d'entraînement sur PyTorch (paramètre `keras_backend`), avec la bibliothèque
# kornia, qui tire une transformation par image et déforme tout le lot en une seule
# opération, bien plus vite que les couches de Keras sur ce backend ; avec le paramètre
# `augmentation.in_model`, elle revient dans le modèle, comme dans l'exemple keras.io.
# L'optimiseur est `AdamW`. Pour chaque configuration, nous gardons le meilleur point de
# contrôle sur la validation, puis nous l'évaluons une seule fois sur le test.
#
# Les trois configurations de 2022 gardent leurs formes de 2022, mais leur budget (images
# par classe, époques) dépend du profil et de la machine : le tableau ci-dessous le donne.
# Quand ce budget est petit, un résultat proche du hasard mesure ce budget, pas ce que peut
# ce modèle.
#
# La dernière configuration est la nôtre. D'après Steiner et al., un ViT entraîné
# sur peu de données a surtout besoin d'aide : nous lissons les étiquettes et, surtout,
# remplaçons le découpage en patchs par quelques convolutions de pas 2, comme dans les
# modèles hybrides (R+ViT) de cet article : chaque case de la carte obtenue devient un jeton,
# et le transformeur qui suit est le même. Le taux d'apprentissage monte linéairement puis
# décroît linéairement jusqu'à zéro à la fin du budget, ce qui réussit le mieux aux
# entraînements courts (Li et al., *Budgeted Training*, 2020). Le deuxième notebook repart
# de ce réseau pour ses 10 classes.

# %%
display(Markdown(narrative.vit_budget_markdown(p, provenance.hardware()) + " "
                 + narrative.keras_setup_markdown(p)))
pd.json_normalize([run.model_dump() for run in p.runs]).set_index("name")

# %% [markdown]
# ## Le réseau
#
# Voici le ViT, écrit ici comme dans l'exemple keras.io : les couches `Patches` et
# `PatchEncoder` et la fonction `mlp` de l'exemple (dans `common.models.vit`, pour qu'un
# modèle enregistré se relise), puis les blocs de transformer et la tête. L'attention
# multi-têtes et les convolutions de la tige sont celles de Keras, calculées plus vite sur
# CPU avec torch (`vit.MultiHeadAttention`, `vit.Conv2D` : mêmes poids, mêmes résultats).
# C'est cette fonction que l'entraînement ci-dessous appelle : pour essayer une autre tête
# ou un autre bloc, il suffit de la modifier et de relancer le notebook. Le deuxième
# notebook et les bancs d'essai construisent le même réseau avec
# `common.models.vit.build_vit`, et un test vérifie que les deux donnent les mêmes couches.

# %%
import keras
from keras import layers

from common.models import vit
from common.models.augmentation import augmentation_layers


def create_vit_classifier(net, augmentation, num_classes, stats, name):
    """The keras.io ViT of one configuration's ``network`` group (``net``), with its
    ``augmentation`` group's layers when they go inside the model; ``stats``: the training
    pixels' per-channel mean and variance (normalisation inside the model)."""
    inputs = keras.Input((net.image_size, net.image_size, 3), name="image")
    x = inputs
    for layer in augmentation_layers(augmentation.model_level):
        x = layer(x)  # augmentation.in_model: augmented inside the model, as keras.io
    x = layers.Normalization(mean=stats[0], variance=stats[1], name="normalize")(x)
    if net.stem_channels:  # hybrid: stride-2 convolutions, one token per cell of their map
        x = vit.conv_stem(x, net.stem_channels)
    else:
        x = vit.Patches(net.patch_size, name="patches")(x)
    x = vit.PatchEncoder(vit.num_patches(net.image_size, net.patch_size), net.projection_dim,
                         name="encoder")(x)
    for i in range(net.transformer_layers):
        rate = net.drop_path_rate(i)  # stochastic depth, deeper blocks dropped more often
        drop = vit.StochasticDepth(rate, name=f"block{i}_droppath") if rate else (lambda t: t)
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(x)
        h = vit.MultiHeadAttention(net.num_heads, net.head_dim, dropout=net.dropout,
                                   name=f"block{i}_attention")(h, h)
        x = layers.Add(name=f"block{i}_add1")([drop(h), x])
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(x)
        h = vit.mlp(h, [net.projection_dim * 2, net.projection_dim], net.dropout,
                    f"block{i}_mlp")
        x = layers.Add(name=f"block{i}_add2")([drop(h), x])
    x = layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    x = layers.Dropout(net.head_dropout, name="head_dropout")(x)
    x = vit.mlp(x, net.mlp_head_units, net.head_dropout, "head")  # keras.io's MLP head
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)  # float32: stable
    return keras.Model(inputs, logits, name=name)


# %% [markdown]
# Le ViT de la deuxième configuration, celle des patchs ci-dessus, couche par couche : les
# patchs et leur encodage, puis les blocs de transformer, chacun avec sa normalisation, son
# attention multi-têtes, son MLP et ses deux additions résiduelles.

# %%
create_vit_classifier(first.network, first.augmentation, len(labels), (0.0, 1.0),
                      first.name).summary(line_length=100)

# %% [markdown]
# ## L'entraînement
#
# Chaque configuration suit les mêmes étapes : ses images d'entraînement et de validation,
# le réseau, `AdamW` avec son taux d'apprentissage et son calendrier, l'entraînement (chaque
# lot augmenté, et mélangé par mixup ou CutMix quand la configuration le demande), le
# meilleur point de contrôle sur la validation, puis une seule évaluation sur le test.

# %%
from common.models.origin import weights_info

records, tests = [], {}
for cfg in p.runs:
    print(f"=== {cfg.name}")
    data = vit_runs.load_arrays(cfg, parts, seed=p.seed)
    keras.utils.set_random_seed(p.seed)  # the same initial weights at every re-run
    model = create_vit_classifier(cfg.network, cfg.augmentation, len(labels),
                                  data.pixel_stats(), cfg.name)
    vit_runs.compile_model(model, cfg, data)
    trained = vit_runs.fit(model, cfg, data, num_classes=len(labels), seed=p.seed,
                           model_dir=session.model_dir(cfg.name))
    tests[cfg.name] = vit_runs.evaluate(trained["model"], cfg, parts)
    records.append(vit_runs.record(cfg, trained, tests[cfg.name],
                                   weights=weights_info("random-init", pretrained=False),
                                   labels=labels, splits=parts,
                                   model_dir=session.model_dir(cfg.name),
                                   stats="of the training set"))

# %% [markdown]
# ## Résultats

# %%
display(presentation.runs_table(records))

# %%
session.figures.append(figures.training_curves(records, session.figure("curves")))

# %% [markdown]
# Quelques images de test avec la classe prédite par la meilleure configuration (en vert quand
# elle est juste, en rouge sinon).

# %%
best = max(records, key=lambda r: r.metrics.best_val_accuracy)
session.figures.append(figures.prediction_grid(tests[best.name], labels, 15,
                                             session.figure("predictions")))

# %%
out = session.write_results(records)
chance = 1 / len(labels)
display(Markdown(
    f"La meilleure configuration sur la validation, **{best.name}**, atteint "
    f"**{presentation.pct(best.metrics.test_accuracy)}** d'exactitude sur le test "
    f"(top-5 : {presentation.pct(best.metrics.test_top5_accuracy)}), pour un hasard à "
    f"{presentation.pct(chance)}. "
    f"Résultats écrits dans `{out.name}`."))
