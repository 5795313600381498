"""The sentences about the setup, each built from what it reads: the report's from the results
files, a notebook's (before its runs) from its parameters and the machine.

Every claim here (the profile, a dry run, the cores or GPUs, the number of classes, the
dataset's counts and whether it has the official test split, the checkpoint a fine-tuning
started from, the rule that chose each kept epoch) comes from the ``results`` payloads
(:mod:`common.results.contract`); the only typed facts are quotations, marked as such in
:mod:`common.config.study`. ``collected``: notebook -> its
:class:`common.results.contract.Results`, or None when it has not run.
A notebook's budgets, Keras backend and hardware come from its parameters
(:mod:`common.config.schema`) and :func:`common.results.provenance.hardware`.
"""

from __future__ import annotations

import re

from common.config.study import CHECKPOINT_2022, NOTEBOOKS, STANFORD_CARS
from common.report.presentation import CROPS, NBSP, crop_words, number, pct


def title(notebook: str, payload) -> str:
    """'ViT from scratch, 196 classes': the model and the classes its results record."""
    if payload is None:
        return NOTEBOOKS[notebook].model + (" (toutes les classes)"
                                            if NOTEBOOKS[notebook].task == "all"
                                      else " (classes choisies)")
    return f"{NOTEBOOKS[notebook].model}, {payload.dataset.n_classes} classes"


def titles(collected: dict) -> dict[str, str]:
    return {n: title(n, p) for n, p in collected.items()}


def _first(collected: dict, task: str | None = None):
    return next((p for n, p in collected.items()
                 if p and (task is None or NOTEBOOKS[n].task == task)), None)


def cores(machine) -> int | None:
    """The CPU cores a run had (a :class:`common.results.provenance.Machine`, or the
    results' environment; older files: read from the device description)."""
    if machine.cores:
        return int(machine.cores)
    m = re.search(r"(\d+) cores", machine.device)
    return int(m.group(1)) if m else None


def hardware(machine) -> str:
    """'2 cœurs de CPU', '1 cœur de CPU' or '4 GPU (NVIDIA H200, …)', from the results
    (``machine``: a :class:`common.results.provenance.Machine` or the results'
    environment)."""
    device = machine.device
    if machine.gpus or device.split(" ", 2)[1:2] == ["GPU:"]:
        return device.replace("GPU:", "GPU :")
    n = cores(machine)
    if n is None:
        return f"le matériel noté dans les résultats ({device})"
    return f"{n} cœur{'s' if n > 1 else ''} de CPU"


def dry_run_warning(collected: dict) -> str | None:
    """The warning of a dry run, naming the profile it ran (None when no run was dry)."""
    dry = [p for p in collected.values() if p and p.dry_run]
    if not dry:
        return None
    profiles = ", ".join(f"`{p}`" for p in sorted({p.profile for p in dry}))
    return (f"**Exécution à blanc (dry run)** du profil {profiles} : les mêmes modèles et "
            "réglages, mais sur quelques images, une époque par étape et des poids de "
            "substitution quand les vrais manquent. Ce rapport vérifie que toute la chaîne "
            "tourne ; **aucun de ses chiffres ne mesure quoi que ce soit**.")


def dataset_markdown(collected: dict) -> str:
    """Stanford Cars as published (a quotation), then the copy this report's runs used: its
    images and classes, whether it has the official test split, and the shared split."""
    ref = STANFORD_CARS
    text = (f"Stanford Cars (Krause et al., 2013) compte, dans sa version publiée, "
            f"{number(ref['images'])} photos de {ref['classes']} modèles de voitures (marque, "
            f"modèle, année), séparées officiellement en {number(ref['train'])} images "
            f"d'entraînement et {number(ref['test'])} de test, avec une boîte englobante par "
            "voiture.")
    payload = _first(collected, "all") or _first(collected)
    if payload is None:
        return text
    ds = payload.dataset
    copy = f"{number(ds.n_images)} images de {ds.n_classes} classes"
    if ds.synthetic:
        return (text + f" Les expériences de ce rapport n'ont pas tourné sur Stanford Cars, "
                f"mais sur des **données générées** : {copy}.")
    complete = (ds.n_images == ref["images"] and ds.n_classes == ref["classes"]
                and ds.official_test)
    if complete:
        return text + f" La copie utilisée ici est complète : {copy}, avec le test officiel."
    test = ("elle a le test officiel" if ds.official_test else
            "elle n'a pas le test officiel : le test y est tiré au hasard, "
            f"{pct(ds.split.test_fraction, 0)} de chaque classe")
    return text + f" La copie utilisée ici compte {copy} ; {test}."


def split_markdown(collected: dict) -> str | None:
    """The shared split: its sizes, and which experiments share which test set."""
    payload = _first(collected, "all")
    if payload is None:
        return None
    ds = payload.dataset
    sizes = ds.split_sizes
    drawn = ("le test officiel du jeu" if ds.official_test else
             f"{pct(ds.split.test_fraction, 0)} de chaque classe, tirés au hasard")
    ten = _first(collected, "ten")
    return (f"Pour ce rapport, le jeu utilisé compte {ds.n_classes} classes ; entraînement : "
            f"{number(sizes.train)} images, validation : {number(sizes.val)}, test : "
            f"{number(sizes.test)} ({drawn}). Ces trois ensembles sont tirés une seule "
            f"fois, sur tout le jeu : les expériences sur les {ds.n_classes} classes "
            "partagent ce test"
            + (f", et celles sur {ten.dataset.n_classes} classes en partagent la part de "
               "leurs classes" if ten else "")
            + ". L'empreinte des images de test, notée dans chaque fichier de résultats, le "
            "vérifie. " + _disjoint(collected) + " " + _crops(collected))


def _disjoint(collected: dict) -> str:
    """Whether every notebook recorded that its sets share no image."""
    done = {n: p for n, p in collected.items() if p}
    unchecked = [n[:2] for n, p in done.items() if not p.dataset.split.disjoint]
    if not unchecked:
        return ("Aucune image n'est dans deux de ces ensembles : chaque notebook l'a vérifié "
                "sur ses données avant de s'entraîner (`dataset.split.disjoint`).")
    return (f"Les résultats de {', '.join(unchecked)} ne notent pas la vérification que ces "
            "ensembles sont disjoints.")


def _crops(collected: dict) -> str:
    """How the experiments read their images, from each results file's ``dataset.crop``."""
    crops = {n: p.dataset.crop for n, p in collected.items() if p}
    known = {n: c for n, c in crops.items() if c}
    if not known:
        return "Les résultats ne disent pas comment les images ont été recadrées."
    kinds = {(c.mode, c.margin) for c in known.values()}
    if len(kinds) == 1 and len(known) == len(crops):
        return ("Toutes les expériences lisent chaque image de la même façon : "
                f"{crop_words(next(iter(known.values())))} ; les modèles comparés voient les "
                "mêmes entrées.")
    parts = [f"{n[:2]} : {CROPS[c.mode] if c else 'non noté'}" for n, c in crops.items()]
    return ("Les expériences ne lisent pas toutes leurs images de la même façon ("
            + " ; ".join(parts) + ") : le rapport ne compare pas celles qui diffèrent.")


def starting_network_markdown(collected: dict) -> str | None:
    """For 02's runs that start from 01's network: whether that network was trained on the
    same data and split, read from both results files (None without such a run)."""
    name = next(n for n, entry in NOTEBOOKS.items() if entry.starts_from)  # 02, from 01
    ten, first = collected.get(name), collected.get(NOTEBOOKS[name].starts_from)
    if not ten or not any(r.weights.source == "pretrained-here" for r in ten.runs):
        return None
    mine = ten.dataset.split.fingerprints
    theirs = first and first.dataset.split.fingerprints
    if mine and mine == theirs:
        return ("Le réseau de départ a été entraîné sur les mêmes données et le même "
                f"découpage (empreinte `{mine['split']}`, vérifiée avant l'entraînement) : "
                "aucune image de ce test n'a servi à l'entraîner, et aucun poids ne vient "
                "d'ailleurs.")
    return ("Les résultats ne permettent pas de vérifier que le réseau de départ a été "
            "entraîné sur le même découpage que ce test : la comparaison est à lire avec "
            "prudence.")


def budget_markdown(payload) -> str:
    """What the configurations of 01 received here, as its results record them: the
    hardware, then the epochs each ran and the images per class of the pure ViTs (those of
    2022) and of our hybrid ones (not in a dry run, whose images its warning gives)."""
    configs = [{"name": r.name,
                "hybrid": bool((r.params.get("network") or {}).get("stem_channels")),
                "epochs": len(r.history.loss),
                **({"cap": r.params["cap_per_class"]}
                   if "cap_per_class" in r.params and not payload.dry_run else {})}
               for r in payload.runs]
    return (_budget(payload.profile, payload.environment, configs, "ont reçu")
            + f" Le résultat des ViT «{NBSP}purs{NBSP}» mesure ce budget.")


def checkpoint_markdown(payload, outputs: str) -> str:
    """Which weights the fine-tuning runs of a notebook started from, against 2022's."""
    asked = payload.params["checkpoint"]
    run = payload.runs[0]
    weights = run.weights
    if not weights.pretrained:
        return (f"Ici, le profil `{outputs}` demandait `{asked}`, mais ces poids n'ont pas pu "
                f"être chargés ({weights.reason}) : les modèles ci-dessous partent de "
                "**poids aléatoires**.")
    size = run.params.get("model_parameters")
    text = f"Ici, le profil `{outputs}` part de `{weights.source}`"
    text += f" ({number(size / 1e6, 1)} millions de paramètres)." if size else "."
    if weights.source != CHECKPOINT_2022:
        text += f" Ce n'est pas le point de départ de 2022 (`{CHECKPOINT_2022}`)."
    return text


def checkpoint_rule_markdown(payload) -> str:
    """The rule that chose each run's kept epoch, as the runs record it."""
    rules = {}
    for run in payload.runs:
        rule = run.checkpoint_rule
        key = (rule.metric, rule.from_epoch) if rule else None
        rules.setdefault(key, []).append(run)
    parts = []
    for key, runs in rules.items():
        names = _names(runs)
        if key is None:
            parts.append(f"{names} : règle non notée dans les résultats")
            continue
        metric, first = key
        what = ("la meilleure exactitude de validation" if metric == "val_accuracy"
                else f"le meilleur `{metric}`")
        since = "" if first <= 1 else f", à partir de l'époque {first}"
        kept = ", ".join(f"{r.best_epoch}" for r in runs if r.best_epoch)
        parts.append(f"{names} : {what}{since}"
                     + (f" (époque retenue : {kept})" if kept and len(runs) == 1 else
                        f" (époques retenues : {kept})" if kept else ""))
    return ("Le point de contrôle retenu, d'après la règle que notent les résultats : "
            + " ; ".join(parts) + ". Le test ne sert qu'à la mesure finale.")


# --------------------------------------------------------------------------- notebooks

_BACKENDS = {"torch": "PyTorch", "tensorflow": "TensorFlow"}


def _names(runs) -> str:
    return ", ".join(f"*{r['name'] if isinstance(r, dict) else r.name}*" for r in runs)


def _epochs(configs) -> str:
    epochs = sorted({c["epochs"] for c in configs})
    if len(epochs) == 1:
        return f"{epochs[0]} époque{'s' if epochs[0] > 1 else ''}"
    return f"de {epochs[0]} à {epochs[-1]} époques selon la configuration"


def _images(configs) -> str | None:
    """The images per class a group of configurations received (None: not recorded)."""
    if any("cap" not in c for c in configs):
        return None
    caps = sorted({c["cap"] for c in configs}, key=lambda c: c or 0)
    if caps == [None]:
        return "toutes les images d'entraînement et de validation"
    if len(caps) == 1:
        return (f"au plus {caps[0]} image{'s' if caps[0] > 1 else ''} par classe pour "
                "l'entraînement comme pour la validation")
    return "selon la configuration, " + ", ".join(
        f"au plus {c['cap']} images par classe pour *{c['name']}*" if c["cap"]
        else f"toutes les images pour *{c['name']}*" for c in configs)


def _budget(profile: str, machine, configs: list[dict], verb: str) -> str:
    """'Ici (profil `cpu`, 2 cœurs de CPU), les ViT « purs » ... ; notre ViT hybride ...':
    ``configs``: name, hybrid (a convolutional stem), epochs and, when known, cap (images
    per class, None: all); ``verb``: 'reçoivent' or 'ont reçu' (the singular follows)."""
    singular = {"reçoivent": "reçoit", "ont reçu": "a reçu"}[verb]
    pure = [c for c in configs if not c["hybrid"]]
    hybrid = [c for c in configs if c["hybrid"]]
    parts = []
    for group, head in ((pure, f"les ViT «{NBSP}purs{NBSP}», comme ceux de 2022 "
                               f"({_names(pure)}),"),
                        (hybrid, f"notre ViT hybride ({_names(hybrid)})" if len(hybrid) == 1
                         else f"nos ViT hybrides ({_names(hybrid)})")):
        if group:
            images = _images(group)
            parts.append(f"{head} {verb if len(group) > 1 else singular} "
                         + (f"{images}, et " if images else "") + _epochs(group))
    return f"Ici (profil `{profile}`, {hardware(machine)}), " + " ; ".join(parts) + "."


def vit_budget_markdown(params, machine) -> str:
    """What each configuration of a ViT-from-scratch notebook (01, 02) receives here: the
    profile, the hardware, then the images per class and the epochs of the pure ViTs (those of
    2022) and of our hybrid ones (with a convolutional stem; the images per class not in a
    dry run, which cuts them). ``params``: the notebook's
    (:class:`common.config.schema.KerasVitNotebook`); ``machine``:
    :func:`common.results.provenance.hardware`."""
    configs = [{"name": r.name, "hybrid": bool(r.network.stem_channels), "epochs": r.epochs,
                **({} if params.dry_run else {"cap": r.cap_per_class})} for r in params.runs]
    return _budget(params.outputs, machine, configs, "reçoivent")


def keras_setup_markdown(params) -> str:
    """Where a Keras notebook runs (its backend, torch's threads) and where its images are
    augmented: in the training loop or the ``tf.data`` pipeline, or in the model for the
    configurations that set ``augmentation.in_model``."""
    backend = _BACKENDS.get(params.keras_backend, params.keras_backend)
    threads = params.torch_threads if params.keras_backend == "torch" else None
    outside = ("dans la boucle d'entraînement (kornia)" if params.keras_backend == "torch"
               else "dans le pipeline `tf.data`")
    in_model = [r for r in params.runs if r.augmentation.in_model]
    if not in_model:
        where = outside
    elif len(in_model) == len(params.runs):
        where = "dans le modèle"
    else:
        where = f"{outside}, sauf pour {_names(in_model)} : dans le modèle"
    return (f"Keras tourne ici sur {backend}"
            + (f" ({threads} fil{'s' if threads > 1 else ''} de calcul)" if threads else "")
            + f", et les images sont augmentées {where}.")
