"""One configuration of a from-scratch ViT sweep (notebooks 01 and 02): build it (or start
from another run's network), train, evaluate on the test split, save the model folder.

A configuration is a :class:`common.config.schema.KerasVitRun`, whose docstrings say what
each key does (``init_from``: the run of notebook 01 whose network this one starts from;
``test_time_flip``: test probabilities averaged over each image and its mirror image, the
checkpoint still chosen on plain validation accuracy).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from common.config.schema import KerasVitRun
from common.data import images
from common.data.splits import Splits, budget, row_ids
from common.inference.probabilities import keras_probabilities
from common.models import folder as model_folder
from common.models.origin import weights_info
from common.models.vit import build_vit, with_new_head
from common.results.contract import run_record
from common.training.keras_fit import compile_classifier, make_optimizer, train


def build_from_config(cfg: KerasVitRun, num_classes: int, pixels: np.ndarray | None = None,
                      name: str | None = None, stats: tuple | None = None) -> keras.Model:
    """:func:`build_vit` from a sweep configuration. Normalisation from ``pixels`` (N, 3),
    or from ``stats`` (per-channel mean and variance), else a plain 1/255 rescaling;
    augmentation layers inside the model only when the configuration says
    ``augment_in_model``."""
    if pixels is not None:
        stats = (pixels.mean(axis=0), pixels.var(axis=0))
    return build_vit(num_classes, cfg.image_size, cfg.patch_size,
                     projection_dim=cfg.projection_dim, num_heads=cfg.num_heads,
                     key_dim=cfg.key_dim,
                     transformer_layers=cfg.transformer_layers,
                     mlp_head_units=tuple(cfg.mlp_head_units), dropout=cfg.dropout,
                     head_dropout=cfg.head_dropout,
                     stochastic_depth_rate=cfg.stochastic_depth_rate,
                     augmentation=cfg.augmentation if cfg.augment_in_model else "none",
                     mean=None if stats is None else stats[0],
                     variance=None if stats is None else stats[1],
                     stem_channels=cfg.stem_channels, name=name or cfg.name)


def _optimizer_for(cfg: KerasVitRun, steps_per_epoch: int):
    return make_optimizer(cfg.learning_rate, cfg.weight_decay,
                          total_steps=cfg.epochs * steps_per_epoch,
                          warmup_steps=cfg.warmup_epochs * steps_per_epoch,
                          schedule=cfg.schedule, ema_momentum=cfg.ema_momentum)


def fit_config(cfg: KerasVitRun, splits: Splits, *, labels: dict, model_dir, seed: int = 0,
               verbose: int = 2, cache=True, init_from: Path | None = None) -> tuple[dict, dict]:
    """Train and evaluate one configuration of a notebook's sweep; save its model folder.

    ``splits``: the task's split; the run uses its share of the training and validation
    sets (``cap_per_class``) and the whole test set. ``init_from``: a model folder of another
    run (01's network, for 02): its network, every layer but the output, starts this run with
    a new head for ``labels``. ``labels``: 0-based label -> (class id, name). Returns the run
    record of the results contract and the test arrays and probabilities.
    """
    size, (mode, margin) = cfg.image_size, splits.crop
    out, weights, stats = train_config(cfg, splits, labels=labels, model_dir=model_dir,
                                       seed=seed, verbose=verbose, cache=cache,
                                       init_from=init_from)
    x_te, t_te = images.load_images(splits.test, size, mode, margin, cache=cache)
    probs = keras_probabilities(out["model"], x_te, cfg.batch_size, flip=cfg.test_time_flip)
    y_te = t_te["label"].to_numpy()
    write_model_info(cfg, model_dir, labels, stats, splits)
    run = run_record(cfg.name, cfg, weights, y_te, probs, out, Path(model_dir),
                     images=row_ids(t_te))
    return run, {"x": x_te, "y": y_te, "probs": probs, "table": t_te}


def write_model_info(cfg: KerasVitRun, model_dir, labels: dict, stats: str,
                     splits: Splits) -> None:
    """The model folder's labels and preprocessing (what ``python -m common predict`` reads);
    ``stats``: what the normalisation statistics were taken from (:func:`train_config`);
    ``splits``: the split it was trained on, whose ``study`` fingerprints a run that starts
    from this network checks, and whose ``crop`` the images it reads must get too."""
    model_folder.write_info(Path(model_dir), labels, {
        "framework": "keras", "model_file": model_folder.KERAS_FILE,
        "image_size": cfg.image_size, "crop_mode": splits.crop[0],
        "crop_margin": splits.crop[1],
        "normalisation": f"inside the model: Normalization with the per-channel mean and "
                         f"variance {stats}; input RGB pixels 0..255"}, splits.study)


def train_config(cfg: KerasVitRun, splits: Splits, *, labels: dict, model_dir, seed: int = 0,
                 verbose: int = 2, cache=True, init_from: Path | None = None,
                 callbacks: list | None = None) -> tuple[dict, dict, str]:
    """Build (or start from ``init_from``) and train one configuration on its share of the
    training and validation sets; the test set is never read. Returns the output of
    :func:`common.training.keras_fit.train` (best validation epoch, history, durations,
    model), the weights' origin, and what the normalisation statistics were taken from.
    ``callbacks``: more Keras callbacks for ``fit`` (the time-to-accuracy benchmark's)."""
    size, (mode, margin) = cfg.image_size, splits.crop
    if init_from is not None:  # before any work: a network of this study only
        _same_study(Path(init_from), splits.study)
    splits = budget(splits, cfg.cap_per_class, seed=seed)
    (x_tr, t_tr), (x_va, t_va) = (images.load_images(part, size, mode, margin, cache=cache)
                                  for part in (splits.train, splits.val))
    keras.utils.set_random_seed(seed)
    if init_from is not None:
        base = _load_network(Path(init_from), size)
        rows = _same_classes(Path(init_from), labels) if cfg.head_from_init else None
        model = start_from(base, cfg, len(labels), rows=rows, origin=Path(init_from))
        weights = weights_info(
            "pretrained-here", pretrained=False, classes=int(base.output_shape[-1]),
            head="the same classes' output units" if rows else "random-init",
            layers="built from this run's settings (augmentation inside the model, dropout, "
                   "stochastic depth); every weight but the output layer's from the network",
            **{"from": f"{Path(init_from).parent.name}/{Path(init_from).name}"})
        stats = f"of the training set of {Path(init_from).parent.name}"
    else:
        model = build_from_config(cfg, len(labels), x_tr.reshape(-1, 3).astype("float64"))
        weights = weights_info("random-init", pretrained=False)
        stats = "of the training set"
    mixing = cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0
    compile_classifier(model, _optimizer_for(cfg, -(-len(x_tr) // cfg.batch_size)),
                       cfg.label_smoothing, cfg.jit_compile, soft_labels=mixing)
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    out = train(model, x_tr, t_tr["label"].to_numpy(), x_va, t_va["label"].to_numpy(),
                epochs=cfg.epochs, batch_size=cfg.batch_size, verbose=verbose, seed=seed,
                checkpoint_path=model_dir / model_folder.KERAS_FILE,
                augmentation="none" if cfg.augment_in_model else cfg.augmentation,
                select_from_epoch=cfg.select_from_epoch, callbacks=callbacks,
                mix={"num_classes": len(labels), "mixup_alpha": cfg.mixup_alpha,
                     "cutmix_alpha": cfg.cutmix_alpha} if mixing else None)
    return out, weights, stats


def start_from(base: keras.Model, cfg: KerasVitRun, num_classes: int, *,
               rows: list[int] | None = None, origin: Path | None = None) -> keras.Model:
    """This run's network, built from its own settings (its augmentation layers when it
    augments inside the model, its dropout and stochastic depth), that starts with every
    weight of ``base`` (another run's trained network, its normalisation statistics
    included) but the output layer's, which is new for ``num_classes`` classes
    (:func:`common.models.vit.with_new_head`; ``rows``: from ``base``'s units for the same
    classes). Raises ValueError, one line, when the two networks' layers differ (another
    depth, width or stem): the settings that shape the network must be ``base``'s."""
    where = f"the network in {origin}" if origin else "the starting network"
    try:
        norm = base.get_layer("normalize")
        stats = (np.asarray(norm.input_mean), np.asarray(norm.input_variance))
    except ValueError:  # rescaled by 1/255, no statistics
        stats = None
    head = with_new_head(base, num_classes, name=cfg.name, rows=rows).get_layer("logits")
    model = build_from_config(cfg, num_classes, stats=stats)
    mine = {layer.name: layer for layer in model.layers if layer.weights}
    theirs = {layer.name: layer for layer in base.layers if layer.weights}
    for name in sorted((set(mine) ^ set(theirs)) - {"logits"}):
        side = "this run" if name in mine else where
        raise ValueError(f"init_from: layer {name!r} is only in {side}: set the keys that shape "
                         f"the network (transformer_layers, projection_dim, num_heads, key_dim, "
                         f"mlp_head_units, stem_channels) as in {where}")
    for name, layer in mine.items():
        source = head if name == "logits" else theirs[name]
        values = source.get_weights()
        shapes = [tuple(w.shape) for w in layer.weights]
        if shapes != [tuple(v.shape) for v in values]:
            raise ValueError(f"init_from: layer {name!r} has weights of shapes {shapes} here, "
                             f"{[tuple(v.shape) for v in values]} in {where}: set the keys that "
                             f"shape the network as there")
        layer.set_weights(values)
    return model


def _same_study(folder: Path, study: dict) -> None:
    """Refuse (ValueError, one line) a starting network trained on other data or another
    split than ``study`` (``Splits.study``): its training images could be in this run's
    test set."""
    if not (folder / model_folder.STUDY).is_file():
        if (folder / model_folder.KERAS_FILE).is_file():
            raise ValueError(f"init_from: the network in {folder} does not record the study it "
                             f"was trained in ({model_folder.STUDY}): train it again (make "
                             f"run re-runs notebook 01)")
        return  # no network at all: _load_network says what to do
    theirs = model_folder.read_study(folder)
    for key, what in (("data", "other data"), ("split", "another split")):
        if theirs[key] != study.get(key):
            raise ValueError(
                f"init_from: the network in {folder} was trained on {what} than this run "
                f"({key} fingerprint {theirs[key]}, here {study.get(key)}): its training "
                f"images could be in this run's test set; run notebook 01 with the same data "
                f"folder and split (split_seed, fractions of the study file)")


def _same_classes(folder: Path, labels: dict) -> list[int]:
    """For each of ``labels`` (in order), the output unit of the network in ``folder`` that
    scores the same class id."""
    unit_of = {cid: unit for unit, (cid, _) in model_folder.read_labels(folder).items()}
    missing = [cid for _, (cid, _) in sorted(labels.items()) if cid not in unit_of]
    if missing:
        raise ValueError(f"head_from_init: the network in {folder} has no output for class "
                         f"ids {missing}: set head_from_init: false")
    return [unit_of[cid] for _, (cid, _) in sorted(labels.items())]


def _load_network(folder: Path, size: int) -> keras.Model:
    """The trained network of another run's model folder, checked against ``size``."""
    path = folder / model_folder.KERAS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"init_from: no trained network at {path}: run the notebook "
                                "that trains it first (make knows the order)")
    model = keras.saving.load_model(path, safe_mode=True)
    if model.input_shape[1] != size:
        raise ValueError(f"init_from: the network in {folder} takes {model.input_shape[1]} px "
                         f"images but this configuration says image_size {size}")
    return model
