# ---
# title: "Vision Transformers sur Stanford Cars"
# subtitle: "Reprise reproductible d'une preuve de concept de 2022"
# author: "Équipe vit-cars-poc"
# date: today
# lang: fr
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

# %% tags=["parameters"]
profile = "cpu"

# %%
import datetime

from IPython.display import Image, Markdown, display

from common.config.study import NOTEBOOKS, REFERENCE_2022
from common.core import paths
from common.report import figures, narrative, presentation, verdicts
from common.report.explorations import explorations_markdown, explorations_table
from common.report.presentation import number, pct
from common.results import contract as results
from common.results.comparison import chosen_run

collected = results.collect(profile)
runs = results.all_runs(collected)
reference = REFERENCE_2022
TITLES = narrative.titles(collected)
report_figures = paths.results_dir(profile) / "figures"


def show_figure(notebook, suffix):
    """Display a figure a notebook saved; say so when it is missing."""
    payload = collected.get(notebook)
    match = [f for f in (payload.figures if payload else []) if f.endswith(suffix)]
    if match:
        display(Image(filename=results.resolve(match[0])))
    elif payload:
        display(Markdown(f"*Figure `{suffix}` absente : le notebook `{notebook}` ne l'a pas "
                         "enregistrée.*"))
    else:
        display(Markdown(f"*Figure `{suffix}` absente : le notebook `{notebook}` n'a pas de "
                         "résultats pour ce profil.*"))


def missing_note(notebook):
    if collected[notebook] is None:
        display(Markdown(
            f"::: {{.callout-warning}}\nL'expérience **{TITLES[notebook]}** (`{notebook}`) n'a "
            f"pas de résultats pour le profil `{profile}` : lancez "
            f"`make run PROFILE={profile}`.\n:::"))
        return True
    return False


def sweep_table(notebook):
    """The table of a notebook's runs, or the note that it has no results."""
    if not missing_note(notebook):
        display(presentation.runs_table(collected[notebook].runs))


def best_note(notebook):
    """One sentence on the run chosen on validation, with its interval."""
    b = best(notebook)
    if b is None:
        return
    m = b.metrics
    chance = 1 / collected[notebook].dataset.n_classes
    display(Markdown(
        f"Meilleure configuration (sur la validation) : **{b.name}**, "
        f"{pct(m.test_accuracy)} sur le test (IC 95 % : "
        f"{presentation.interval(m.test_accuracy_ci95)} ; top-5 : "
        f"{pct(m.test_top5_accuracy)}, F1 macro : {pct(m.test_macro_f1)}), pour un "
        f"hasard à {pct(chance)}."))


def best(notebook):
    """The run of a notebook chosen on validation (None when missing)."""
    payload = collected[notebook]
    return None if payload is None else chosen_run(payload)


# %%
done = [n for n, p in collected.items() if p is not None]
missing = [n for n, p in collected.items() if p is None]
warnings = []
if missing:
    warnings.append("Expériences sans résultats pour ce profil : "
                    + ", ".join(f"**{TITLES[n]}**" for n in missing)
                    + f". Lancez `make run PROFILE={profile}`.")
if len(runs) and runs["synthetic"].any():
    warnings.append("Certaines expériences ont tourné sur des **données générées** (formes "
                    "colorées), pas sur Stanford Cars : leurs chiffres ne disent rien des "
                    "voitures et les conclusions ci-dessous n'en sont pas.")
if len(runs) and (~runs["pretrained"] & runs["notebook"].map(
        lambda n: NOTEBOOKS[n].pretrained)).any():
    warnings.append("Les poids pré-entraînés n'ont pas pu être chargés pour certains modèles, "
                    "qui sont partis de **poids aléatoires** (colonne « poids » des tableaux) : "
                    "ils ne mesurent pas l'apprentissage par transfert, et leur comparaison "
                    "avec les chiffres de 2022 ne vaut pas.")
if dry := narrative.dry_run_warning(collected):
    warnings.insert(0, dry)
if warnings:
    display(Markdown("::: {.callout-warning}\n## Avertissement {.unnumbered}\n\n"
                     + "\n\n".join(warnings) + "\n:::"))

# %%
def lock_line(lock):
    """The lock of exact versions, and a warning when the installed ones differ from it."""
    if not lock:
        return "- **Verrou des versions** : aucun (versions non figées)\n"
    line = (f"- **Verrou des versions** : `{lock.file}` ({lock.packages} paquets, "
            f"SHA-256 `{lock.sha256[:12]}`)")
    if not lock.mismatches:
        return line + ", respecté\n"
    shown = ", ".join(f"{m.package} {m.installed or 'absent'} au lieu de {m.locked}"
                      for m in lock.mismatches[:5])
    more = f" et {len(lock.mismatches) - 5} autres" if len(lock.mismatches) > 5 else ""
    return (line + f".\n  **⚠️ Versions installées différentes du verrou** : {shown}{more}. "
            "Ces résultats ne viennent pas exactement de l'environnement figé.\n")


first = collected[done[0]] if done else None
if first:
    env = first.environment
    ds = first.dataset
    commits = sorted({p.git_commit or "inconnu" for p in collected.values() if p})
    dates = sorted(p.created for p in collected.values() if p)
    backends = ", ".join(f"{n[:2]} {p.environment.keras_backend}"
                         for n, p in collected.items()
                         if p and p.environment.keras_backend)
    display(Markdown(
        "::: {.callout-note}\n## Provenance {.unnumbered}\n\n"
        f"- **Profil** : `{profile}` ; rapport produit le "
        f"{datetime.date.today().isoformat()}, expériences du {dates[0][:10]} au "
        f"{dates[-1][:10]}\n"
        f"- **Commit git** : {', '.join(f'`{c}`' for c in commits)}\n"
        f"- **Matériel** : {env.device}\n"
        f"- **Bibliothèques** : Python {env.python}, Keras {env.keras}, "
        f"TensorFlow {env.tensorflow}, PyTorch {env.torch}, "
        f"Transformers {env.transformers}\n"
        + lock_line(env.lock)
        + (f"- **Backend Keras** (par notebook) : {backends}\n" if backends else "")
        + "- **Durée de chaque notebook** : " + ", ".join(
            f"{n[:2]} {p.duration_s / 60:.1f} min".replace(".", ",")
            for n, p in collected.items() if p) + "\n"
        + f"- **Données** : `{ds.root}` (organisation {ds.layout}"
        f"{', données générées' if ds.synthetic else ''})\n:::"))

# %% [markdown]
# ## Introduction
#
# En 2017, *Attention Is All You Need* (Vaswani et al.) remplaçait les réseaux récurrents de la
# traduction automatique par un mécanisme d'attention : chaque élément d'une séquence se
# représente comme une moyenne pondérée de tous les autres, les poids étant appris. Ce
# Transformer est devenu l'architecture de référence du traitement du langage.
#
# *An Image is Worth 16x16 Words* (Dosovitskiy et al., 2020) a appliqué ce même Transformer
# aux images : l'image est découpée en patchs, chaque patch devient un « mot », et le modèle,
# le Vision Transformer (ViT), égale les meilleurs réseaux convolutifs… à condition d'être
# pré-entraîné sur de très grands jeux de données. *How to train your ViT?* (Steiner et al.,
# 2021) a ensuite montré comment l'augmentation de données et la régularisation compensent en
# partie le manque de données.
#
# Notre preuve de concept de 2022 posait une question simple : un ViT peut-il reconnaître des
# modèles de voitures, d'abord entraîné à partir de rien, puis pré-entraîné et affiné ? Nous
# la comparions à un réseau convolutif classique, EfficientNetB0 (Tan et Le, 2019). Ce rapport
# reprend toute l'étude de façon reproductible ; chaque chiffre et chaque figure viennent des
# fichiers de résultats écrits par les notebooks.

# %% [markdown]
# ## Le jeu de données

# %%
display(Markdown(narrative.dataset_markdown(collected)))

# %% [markdown]
# Nous l'avions préféré à Stanford Dogs : les classes y sont plus nombreuses, plus fines (deux
# années d'un même modèle), et les images d'une même classe partagent une forme rigide, ce
# qui rend la classification difficile sans la rendre arbitraire. La @fig-counts montre
# combien d'images compte chaque classe du jeu utilisé ici, et la @fig-samples une image de
# quelques classes.

# %%
if split := narrative.split_markdown(collected):
    display(Markdown(split))

# %%
#| label: fig-counts
#| fig-cap: "Nombre d'images par classe."
show_figure("01_vit_scratch", "_class_counts.png")

# %%
#| label: fig-samples
#| fig-cap: "Une image d'entraînement de quelques classes."
show_figure("01_vit_scratch", "_samples.png")

# %% [markdown]
# ## Le ViT entraîné from scratch
#
# Nous suivons l'exemple keras.io « Image classification with Vision Transformer » : l'image
# est découpée en patchs (@fig-patches), chaque patch est projeté linéairement et reçoit un
# encodage de position appris, puis traverse une pile de blocs de transformer (normalisation,
# attention multi-têtes, MLP), avant une tête de classification. Le @tbl-01 donne les
# configurations et leurs résultats, la @fig-01-curves leurs courbes d'apprentissage.

# %%
#| label: fig-patches
#| fig-cap: "Une image d'entraînement découpée en patchs, comme la voit le ViT (tailles en titre)."
show_figure("01_vit_scratch", "_patches.png")

# %%
#| label: tbl-01
#| tbl-cap: "ViT from scratch sur toutes les classes : les configurations."
sweep_table("01_vit_scratch")

# %%
best_note("01_vit_scratch")

# %%
#| label: fig-01-curves
#| fig-cap: "Perte et exactitude par époque du ViT from scratch sur toutes les classes (tirets : entraînement ; trait plein : validation)."
show_figure("01_vit_scratch", "_curves.png")

# %% [markdown]
# En 2022, les trois premières configurations affichaient environ 1 % d'exactitude sur le
# test. Une partie de ce chiffre était un artefact : voir la section sur les bugs corrigés.

# %%
if collected["01_vit_scratch"]:
    display(Markdown(narrative.budget_markdown(collected["01_vit_scratch"])))

# %% [markdown]
# ## Le fine-tuning d'un ViT pré-entraîné
#
# En 2022, nous partions de `google/vit-base-patch16-224-in21k` (ViT-Base, pré-entraîné sur
# ImageNet-21k), que nous affinions avec la bibliothèque Transformers de Hugging Face, et nous
# comparions deux façons de préparer les données : équilibrer toutes les classes sur la plus
# petite, ou garder jusqu'à 64 images par classe. Le @tbl-03 donne les résultats, la
# @fig-03-curves l'apprentissage, la @fig-03-predictions quelques prédictions et la
# @fig-03-attention où regarde le modèle.

# %%
if not missing_note("03_vit_finetune"):
    display(Markdown(narrative.checkpoint_markdown(collected["03_vit_finetune"], profile)))

# %%
#| label: tbl-03
#| tbl-cap: "ViT fine-tuné sur toutes les classes."
sweep_table("03_vit_finetune")

# %%
best_note("03_vit_finetune")

# %%
#| label: fig-03-curves
#| fig-cap: "Perte et exactitude par époque du fine-tuning sur toutes les classes."
show_figure("03_vit_finetune", "_curves.png")

# %%
#| label: fig-03-predictions
#| fig-cap: "Une photo de test par classe et la classe prédite (vert : juste ; rouge : faux)."
show_figure("03_vit_finetune", "_predictions.png")

# %%
#| label: fig-03-attention
#| fig-cap: "Attention rollout : les zones claires pèsent le plus dans la décision."
show_figure("03_vit_finetune", "_attention.png")

# %% [markdown]
# ### Sur les classes choisies
#
# Le même fine-tuning sur les classes choisies du deuxième notebook (@tbl-04,
# @fig-04-confusion).

# %%
#| label: tbl-04
#| tbl-cap: "ViT fine-tuné sur les classes choisies."
sweep_table("04_vit_finetune_10classes")

# %%
best_note("04_vit_finetune_10classes")

# %%
#| label: fig-04-confusion
#| fig-cap: "Matrice de confusion du fine-tuning sur les classes choisies (lignes : vraie classe)."
show_figure("04_vit_finetune_10classes", "_confusion.png")

# %% [markdown]
# ## EfficientNetB0
#
# Le réseau convolutif pré-entraîné sur ImageNet sert de point de comparaison : d'abord gelé
# avec une nouvelle tête (comme en 2022), puis avec le haut du réseau dégelé (@tbl-05).

# %%
#| label: tbl-05
#| tbl-cap: "EfficientNetB0, gelé puis dégelé."
sweep_table("05_efficientnet")

# %%
if collected["05_efficientnet"] and len(collected["05_efficientnet"].runs) == 2:
    frozen_run, unfrozen_run = collected["05_efficientnet"].runs
    gain = unfrozen_run.metrics.test_accuracy - frozen_run.metrics.test_accuracy
    display(Markdown(f"Le dégel du haut du réseau fait passer le test de "
                     f"{pct(frozen_run.metrics.test_accuracy)} à "
                     f"{pct(unfrozen_run.metrics.test_accuracy)} "
                     f"({'+' if gain >= 0 else '−'}{presentation.points(gain)} points)."))

# %% [markdown]
# ## Nouveaux essais du modèle from scratch sur les classes choisies
#
# Sur toutes les classes, le ViT from scratch a peu d'images par classe. Nous avions donc
# repris le même modèle sur quelques classes choisies ; nous y ajoutons ici une configuration
# améliorée d'après Steiner et al. C'est le même ViT hybride (quelques convolutions au lieu du
# découpage en patchs, les « R+ViT » de l'article) que la configuration améliorée du premier
# notebook : entraîné d'abord sur toutes les classes, il reçoit une nouvelle couche de sortie
# et se spécialise sur les nôtres (colonne « poids » du @tbl-02). La @fig-02-curves montre
# l'apprentissage, la @fig-02-confusion les confusions de la configuration choisie sur la
# validation.

# %%
if start := narrative.starting_network_markdown(collected):
    display(Markdown(start))

# %%
if collected["02_vit_scratch_10classes"]:
    display(Markdown(narrative.checkpoint_rule_markdown(collected["02_vit_scratch_10classes"])))

# %%
#| label: tbl-02
#| tbl-cap: "ViT from scratch sur les classes choisies."
sweep_table("02_vit_scratch_10classes")

# %%
best_note("02_vit_scratch_10classes")

# %%
#| label: fig-02-curves
#| fig-cap: "Perte et exactitude par époque du ViT from scratch sur les classes choisies."
show_figure("02_vit_scratch_10classes", "_curves.png")

# %%
#| label: fig-02-confusion
#| fig-cap: "Matrice de confusion de la configuration choisie sur la validation, sur les classes choisies."
show_figure("02_vit_scratch_10classes", "_confusion.png")

# %% [markdown]
# ### Le journal des explorations
#
# Chaque réglage essayé pour les modèles from scratch est consigné, avec son exactitude de
# validation et sa durée, dans le journal du dépôt (`explorations/`, une ligne par
# entraînement, écrite par `python -m common explore`). Sur une petite validation, une
# différence ne compte que si elle dépasse l'écart entre graines. Les choix faits avant ce
# journal sont dans la section sur l'historique des choix, plus bas.

# %%
display(Markdown(explorations_markdown(paths.ROOT / "explorations")))

# %%
#| label: tbl-explorations
#| tbl-cap: "Les réglages explorés, classés par exactitude moyenne de validation (écart entre graines entre parenthèses)."
if explorations_table(paths.ROOT / "explorations"):
    display(Markdown(explorations_table(paths.ROOT / "explorations")))

# %% [markdown]
# ## Vue d'ensemble
#
# Le @tbl-overview reprend la meilleure configuration de chaque expérience, choisie sur la
# validation. La @fig-comparison place toutes nos configurations, groupées par expérience, à
# côté des chiffres cités du rapport de 2022 (losanges : mesurés sur le test ; ronds : sur la
# validation) et du hasard (tirets).

# %%
#| label: tbl-overview
#| tbl-cap: "La meilleure configuration de chaque expérience."
if len(runs):
    best_rows = runs.loc[runs.groupby("notebook")["best_val_accuracy"].idxmax()]
    rows = [[TITLES[r.notebook], presentation.breakable(r.run), pct(r.test_accuracy),
             presentation.interval([r.ci_low, r.ci_high]), number(r.test_images),
             pct(1 / collected[r.notebook].dataset.n_classes),
             presentation.short_weights(r.weights)] for r in best_rows.itertuples()]
    display(Markdown(presentation.markdown_table(
        ["expérience", "configuration", "top-1 test", "IC 95 %", "images de test", "hasard",
         "poids"], rows, [22, 16, 9, 12, 8, 8, 14])
        + "\n\n" + presentation.weights_legend(best_rows["weights"].map(
            presentation.short_weights))))

# %%
#| label: fig-comparison
#| fig-cap: "Exactitude de test de chaque configuration, par expérience, avec les chiffres de 2022 et le hasard."
if len(runs):
    chance = {n: 1 / p.dataset.n_classes for n, p in collected.items() if p}
    figures.comparison(runs, reference, TITLES, chance, report_figures / "rapport_comparaison.png")

# %% [markdown]
# ## Les bugs des notebooks de 2022, et leur correction
#
# - **Étiquettes de test décalées.** Les étiquettes d'entraînement avaient été ramenées de
#   1..196 à 0..195, pas celles du test : chaque image de test était comparée à la classe
#   voisine, d'où les « 1 % ». Ici, une seule fonction (`common.data.table.load_table`) numérote les
#   étiquettes à partir de 0 pour tous les ensembles, et les notebooks le vérifient.
# - **Plafond par classe mal appliqué.** La boucle qui gardait au plus 64 images par classe
#   lisait une variable d'une itération précédente. Ici, le plafond (`cap`) et l'équilibrage
#   (`balance`) sont une seule opération de pandas, testée.
# - **Fuites entre ensembles.** Des images étaient déplacées à la main entre dossiers, si bien
#   que des images de test pouvaient servir à l'entraînement. Ici, les ensembles sont tirés
#   une fois, avec une graine (la section sur le jeu de données dit ce que les résultats en
#   vérifient).
#
# ## L'historique des choix
#
# Tous nos choix n'ont pas été faits à l'aveugle. Avant le journal des explorations, deux
# choix du notebook 02 ont été faits alors que ses chiffres de test étaient sous nos yeux :
# partir du réseau du notebook 01 (plutôt que d'entraîner le ViT hybride sur ses seules
# classes) et la cible d'exactitude de 02 (`target_accuracy`). Les chiffres de test de 02
# en sont sans doute un peu optimistes. Les versions successives des recettes de 01 et 02
# ont aussi été comparées un temps sur le test ; elles ne le sont plus que sur la
# validation, dans le journal.

# %% [markdown]
# ## Conclusions et perspectives

# %%
# pairs on the same task: (a, b) says how a does against b
PAIRS = [("03_vit_finetune", "01_vit_scratch"),  # fine-tuned vs from scratch
         ("05_efficientnet", "01_vit_scratch"),  # CNN with transfer vs ViT from scratch
         ("05_efficientnet", "03_vit_finetune"),  # CNN vs ViT, both with transfer
         ("04_vit_finetune_10classes", "02_vit_scratch_10classes")]  # the chosen classes
if len(runs):
    display(Markdown(verdicts.conclusions_markdown(collected, PAIRS, TITLES)
                     + ("\n\nCes comparaisons sont à lire avec l'avertissement du début du "
                        "rapport." if warnings else "")))

# %%
if len(runs):
    held = verdicts.lesson_held(collected, [PAIRS[0], PAIRS[-1]], PAIRS)
    display(Markdown(
        ("Comme en 2022, la leçon principale tient : avec un pré-entraînement, le Vision "
         "Transformer apprend ces catégories fines bien mieux qu'à partir de rien."
         if held else
         "Ces résultats ne permettent pas de confirmer ici la leçon de 2022 (un ViT a besoin "
         "d'un pré-entraînement pour des catégories aussi fines) : il faudrait les poids "
         "pré-entraînés et le jeu complet.")
        + " Les pistes restent celles que nous avions notées : pré-entraînements plus grands, "
        "recadrage systématique sur la voiture, augmentations plus riches (RandAugment, "
        "Mixup) et, pour un modèle sans poids venus d'ailleurs, des architectures hybrides "
        "à tige convolutive, entraînées d'abord sur tout le jeu puis spécialisées, comme "
        "notre configuration améliorée."))
