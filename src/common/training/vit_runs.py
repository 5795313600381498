"""A from-scratch ViT run (notebooks 01 and 02), in the steps a notebook shows: its images
(:func:`load_arrays`), a network (the notebook's own, or :func:`common.models.vit.build_vit`,
the package's keras.io ViT, or :func:`start_from` another run's network), :func:`compile_model`,
:func:`fit`, :func:`evaluate` on the test set once, :func:`record`. :func:`fit_config` chains
them for the package's network.

A configuration is a :class:`common.config.schema.KerasVitRun`, whose docstrings say what
each key does (``init_from``: the run of notebook 01 whose network this one starts from;
``test_time_flip``: test probabilities averaged over each image and its mirror image, the
checkpoint still chosen on plain validation accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from common.config.schema import KerasVitRun, VitNetwork
from common.data import images
from common.data.splits import Splits, budget, row_ids
from common.inference.probabilities import keras_probabilities
from common.models import folder as model_folder
from common.models.origin import weights_info
from common.models.vit import build_vit, with_new_head
from common.results.contract import run_record
from common.results.records import Run
from common.training.keras_fit import compile_classifier, make_optimizer, train


@dataclass
class Arrays:
    """A run's training and validation images as arrays (N, size, size, 3), 0..255, with their
    0-based labels: its share of the task's split (``cap_per_class``). The test images are
    not here: :func:`evaluate` reads them once, after training."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    def pixel_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and variance of the training pixels (the model's normalisation)."""
        pixels = self.x_train.reshape(-1, 3).astype("float64")
        return pixels.mean(axis=0), pixels.var(axis=0)


def load_arrays(cfg: KerasVitRun, splits: Splits, *, seed: int = 0, cache=True) -> Arrays:
    """The run's images at its ``image_size``, cut square as the whole study
    (``splits.crop``); at most ``cap_per_class`` a class, drawn with ``seed``."""
    size, (mode, margin) = cfg.network.image_size, splits.crop
    splits = budget(splits, cfg.cap_per_class, seed=seed)
    (x_tr, t_tr), (x_va, t_va) = (images.load_images(part, size, mode, margin, cache=cache)
                                  for part in (splits.train, splits.val))
    return Arrays(x_tr, t_tr["label"].to_numpy(), x_va, t_va["label"].to_numpy())


def compile_model(model: keras.Model, cfg: KerasVitRun, arrays: Arrays) -> None:
    """Compile ``model`` as the run says: AdamW as its ``optimiser`` group says over its
    epochs (``make_optimizer``), the cross-entropy with the group's label smoothing (on
    mixed labels when its augmentation mixes), top-1 and top-5 accuracy."""
    optimizer = make_optimizer(cfg.optimiser, cfg.epochs,
                               -(-len(arrays.x_train) // cfg.batch_size))
    compile_classifier(model, optimizer, cfg.optimiser.label_smoothing, cfg.jit_compile,
                       soft_labels=cfg.augmentation.mixes)


def fit(model: keras.Model, cfg: KerasVitRun, arrays: Arrays, *, num_classes: int, model_dir,
        seed: int = 0, verbose: int = 2, callbacks: list | None = None) -> dict:
    """Train a compiled ``model`` for the run's epochs on ``arrays``, augmenting each batch
    (unless the model augments itself: ``augmentation.in_model``) and mixing it (mixup,
    CutMix) as the run's ``augmentation`` group says; keep the epoch of best validation
    accuracy in ``model_dir``. Returns :func:`common.training.keras_fit.train`'s numbers,
    the kept network as ``"model"``."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    aug = cfg.augmentation
    mix = ({"num_classes": num_classes, "mixup_alpha": aug.mixup_alpha,
            "cutmix_alpha": aug.cutmix_alpha} if aug.mixes else None)
    return train(model, arrays.x_train, arrays.y_train, arrays.x_val, arrays.y_val,
                 epochs=cfg.epochs, batch_size=cfg.batch_size, verbose=verbose, seed=seed,
                 checkpoint_path=model_dir / model_folder.KERAS_FILE,
                 augmentation=aug.pipeline_level,
                 select_from_epoch=cfg.select_from_epoch, callbacks=callbacks, mix=mix)


def evaluate(model: keras.Model, cfg: KerasVitRun, splits: Splits, cache=True) -> dict:
    """The test set, read once: its images (``x``), labels (``y``), table and the model's
    probabilities (averaged with the mirror images when ``test_time_flip``)."""
    (mode, margin) = splits.crop
    x_te, t_te = images.load_images(splits.test, cfg.network.image_size, mode, margin,
                                    cache=cache)
    probs = keras_probabilities(model, x_te, cfg.batch_size, flip=cfg.test_time_flip)
    return {"x": x_te, "y": t_te["label"].to_numpy(), "probs": probs, "table": t_te}


def record(cfg: KerasVitRun, trained: dict, test: dict, *, weights: dict, labels: dict,
           splits: Splits, model_dir, stats: str) -> Run:
    """Finish the model folder (labels, preprocessing, the study it was trained in) and
    return the run's :class:`common.results.records.Run`. ``stats``: what the normalisation
    statistics were taken from."""
    write_model_info(cfg, model_dir, labels, stats, splits)
    return run_record(cfg.name, cfg, weights, test["y"], test["probs"], trained,
                      Path(model_dir), images=row_ids(test["table"]))


def fit_config(cfg: KerasVitRun, splits: Splits, *, labels: dict, model_dir, seed: int = 0,
               verbose: int = 2, cache=True, init_from: Path | None = None) -> tuple[Run, dict]:
    """One configuration with the package's ViT (:func:`common.models.vit.build_vit`), or
    from another run's network (``init_from``, 01's for 02): :func:`train_config`, :func:`evaluate`,
    :func:`record`. Returns the run record and the test arrays and probabilities."""
    out, weights, stats = train_config(cfg, splits, labels=labels, model_dir=model_dir,
                                       seed=seed, verbose=verbose, cache=cache,
                                       init_from=init_from)
    test = evaluate(out["model"], cfg, splits, cache=cache)
    return record(cfg, out, test, weights=weights, labels=labels, splits=splits,
                  model_dir=model_dir, stats=stats), test


def write_model_info(cfg: KerasVitRun, model_dir, labels: dict, stats: str,
                     splits: Splits) -> None:
    """The model folder's labels and preprocessing (what ``python -m common predict`` reads);
    ``stats``: what the normalisation statistics were taken from (:func:`train_config`);
    ``splits``: the split it was trained on, whose ``study`` fingerprints a run that starts
    from this network checks, and whose ``crop`` the images it reads must get too."""
    model_folder.write_info(Path(model_dir), labels, {
        "framework": "keras", "model_file": model_folder.KERAS_FILE,
        "image_size": cfg.network.image_size, "crop_mode": splits.crop[0],
        "crop_margin": splits.crop[1],
        "normalisation": f"inside the model: Normalization with the per-channel mean and "
                         f"variance {stats}; input RGB pixels 0..255"}, splits.fingerprints)


def train_config(cfg: KerasVitRun, splits: Splits, *, labels: dict, model_dir, seed: int = 0,
                 verbose: int = 2, cache=True, init_from: Path | None = None,
                 callbacks: list | None = None) -> tuple[dict, dict, str]:
    """Build (or start from ``init_from``) and train one configuration on its share of the
    training and validation sets; the test set is never read. Returns :func:`fit`'s output,
    the weights' origin, and what the normalisation statistics were taken from.
    ``callbacks``: more Keras callbacks for ``fit`` (the time-to-accuracy benchmark's)."""
    if init_from is not None:  # before any work: a network of this study only
        _same_study(Path(init_from), splits.fingerprints)
    arrays = load_arrays(cfg, splits, seed=seed, cache=cache)
    keras.utils.set_random_seed(seed)
    if init_from is not None:
        model, weights, stats = network_from(Path(init_from), cfg, labels, splits)
    else:
        model = build_vit(cfg.network, cfg.augmentation, len(labels),
                          stats=arrays.pixel_stats(), name=cfg.name)
        weights = weights_info("random-init", pretrained=False)
        stats = "of the training set"
    compile_model(model, cfg, arrays)
    out = fit(model, cfg, arrays, num_classes=len(labels), model_dir=model_dir, seed=seed,
              verbose=verbose, callbacks=callbacks)
    return out, weights, stats


def network_from(folder: Path, cfg: KerasVitRun, labels: dict,
                 splits: Splits) -> tuple[keras.Model, dict, str]:
    """This run's network started from the trained network in model folder ``folder``
    (another run of this study, on the same data and split: refused in one line otherwise):
    every layer but the output, which is new for ``labels`` (from the same classes' units
    when ``head_from_init``). Returns the network, its weights' origin, and what its
    normalisation statistics were taken from."""
    _same_study(folder, splits.fingerprints)
    base = _load_network(folder, cfg.network.image_size)
    rows = _same_classes(folder, labels) if cfg.head_from_init else None
    model = start_from(base, cfg, len(labels), rows=rows, origin=folder)
    weights = weights_info(
        "pretrained-here", pretrained=False, classes=int(base.output_shape[-1]),
        head="the same classes' output units" if rows else "random-init",
        layers="built from this run's settings (augmentation inside the model, dropout, "
               "stochastic depth); every weight but the output layer's from the network",
        **{"from": f"{folder.parent.name}/{folder.name}"})
    return model, weights, f"of the training set of {folder.parent.name}"


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
    model = build_vit(cfg.network, cfg.augmentation, num_classes, stats=stats, name=cfg.name)
    mine = {layer.name: layer for layer in model.layers if layer.weights}
    theirs = {layer.name: layer for layer in base.layers if layer.weights}
    for name in sorted((set(mine) ^ set(theirs)) - {"logits"}):
        side = "this run" if name in mine else where
        raise ValueError(f"init_from: layer {name!r} is only in {side}: set the keys that shape "
                         f"the network ({', '.join(VitNetwork.SHAPE_KEYS)} of the network "
                         f"group) as in {where}")
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
    split than ``study`` (``Splits.fingerprints``): its training images could be in this run's
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
