"""One configuration of a from-scratch ViT sweep (notebooks 01 and 02): build, optionally
pretrain on other classes, train, evaluate on the test split, save the model folder.

A configuration is a dict of the notebook's parameter file (merged with its defaults and
checked by :mod:`common.config`): ``name``, ``image_size``, ``patch_size``, ``epochs``,
``batch_size`` and optionally every other :func:`common.vit.build_vit` /
:func:`common.keras_training.make_optimizer` argument, plus ``crop_mode``, ``crop_margin``,
``label_smoothing``, ``warmup_epochs``, ``schedule``, ``select_from_epoch``,
``augment_in_model``, ``jit_compile`` and ``pretrain``.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from common import images, model_folder, results
from common.keras_training import (ThroughputCallback, compile_classifier, make_dataset,
                                   make_optimizer, probabilities, train)
from common.vit import build_vit, with_new_head


def build_from_config(cfg: dict, num_classes: int, pixels: np.ndarray | None = None,
                      name: str | None = None) -> keras.Model:
    """:func:`build_vit` from a sweep configuration. Normalisation from ``pixels`` (N, 3),
    else a plain 1/255 rescaling; augmentation layers inside the model only when the
    configuration says ``augment_in_model``."""
    in_model = bool(cfg.get("augment_in_model", False))
    return build_vit(num_classes, int(cfg["image_size"]), int(cfg["patch_size"]),
                     projection_dim=cfg.get("projection_dim", 64),
                     num_heads=cfg.get("num_heads", 4),
                     transformer_layers=cfg.get("transformer_layers", 8),
                     mlp_head_units=tuple(cfg.get("mlp_head_units", (2048, 1024))),
                     dropout=cfg.get("dropout", 0.1), head_dropout=cfg.get("head_dropout", 0.5),
                     stochastic_depth_rate=cfg.get("stochastic_depth_rate", 0.0),
                     augmentation=cfg.get("augmentation", "standard") if in_model else "none",
                     mean=None if pixels is None else pixels.mean(axis=0),
                     variance=None if pixels is None else pixels.var(axis=0),
                     stem_channels=cfg.get("stem_channels"), name=name or cfg["name"])


def _optimizer_for(settings: dict, epochs: int, steps_per_epoch: int):
    return make_optimizer(settings.get("learning_rate", 1e-3),
                          settings.get("weight_decay", 1e-4),
                          total_steps=epochs * steps_per_epoch,
                          warmup_steps=settings.get("warmup_epochs", 0) * steps_per_epoch,
                          schedule=settings.get("schedule", "constant"))


def pretrain(cfg: dict, table, *, seed: int = 0, verbose: int = 2,
             cache=True) -> tuple[keras.Model, dict]:
    """Train the network of ``cfg`` on ``table`` (other classes, see
    :func:`common.splits.other_classes`), as the first stage of a configuration with a
    ``pretrain`` entry.

    ``cfg["pretrain"]`` holds ``epochs`` and optionally ``batch_size``, ``learning_rate``,
    ``warmup_epochs``, ``weight_decay`` and ``schedule`` (default: those of ``cfg``); the
    architecture, crop, augmentation and label smoothing are those of ``cfg``. There is no
    validation: the last epoch is kept. Returns the model (its own ``logits`` layer, one
    output per pretraining class) and a record: ``classes``, ``images``, ``epochs``,
    ``seconds``, ``images_per_second`` and ``history`` (``loss``, ``accuracy``).
    """
    settings = {**cfg, **cfg["pretrain"]}
    size, mode = int(cfg["image_size"]), cfg.get("crop_mode", "squash")
    x, kept = images.load_images(table, size, mode, float(cfg.get("crop_margin", 0.1)),
                                 cache=cache)
    y = kept["label"].to_numpy()
    augmentation = cfg.get("augmentation", "standard")
    in_model = bool(cfg.get("augment_in_model", False))
    keras.utils.set_random_seed(seed)
    classes = int(kept["label"].nunique())
    model = build_from_config(cfg, classes, x.reshape(-1, 3).astype("float64"),
                              f"{cfg['name']}_pretrain")
    epochs, batch = int(settings["epochs"]), int(settings["batch_size"])
    compile_classifier(model, _optimizer_for(settings, epochs, -(-len(x) // batch)),
                cfg.get("label_smoothing", 0.0), cfg.get("jit_compile", "auto"))
    throughput = ThroughputCallback(len(x))
    batches = make_dataset(x, y, batch, shuffle=True, seed=seed,
                           augmentation="none" if in_model else augmentation)
    hist = model.fit(batches, epochs=epochs, callbacks=[throughput], verbose=verbose)
    return model, {"classes": classes, "images": len(x), "epochs": epochs,
                   "seconds": round(throughput.train_seconds, 2),
                   "images_per_second": round(throughput.images_per_second, 2),
                   "history": {k: [float(v) for v in hist.history[k]]
                               for k in ("loss", "accuracy")}}


def fit_config(cfg: dict, splits, *, labels: dict, model_dir, seed: int = 0, verbose: int = 2,
               cache=True, pretrain_table=None) -> tuple[dict, dict]:
    """Train and evaluate one configuration of a notebook's sweep; save its model folder.

    ``cfg`` holds ``name``, ``image_size``, ``patch_size``, ``epochs``, ``batch_size`` and
    optionally the keys listed in the module docstring; ``pretrain`` (see
    :func:`pretrain`): the network is first trained on ``pretrain_table``, then gets a new
    head for ``labels`` and is trained on ``splits``.
    ``labels``: 0-based label -> (class id, name).
    Returns the run record of the results contract and the test arrays and probabilities.
    A pretrained run's record adds ``pretraining`` (see :func:`pretrain`), and its
    ``train_seconds`` counts both stages.
    """
    size, mode = int(cfg["image_size"]), cfg.get("crop_mode", "squash")
    margin = float(cfg.get("crop_margin", 0.1))
    arrays = {k: images.load_images(getattr(splits, k), size, mode, margin, cache=cache)
              for k in ("train", "val", "test")}
    (x_tr, t_tr), (x_va, t_va), (x_te, t_te) = arrays["train"], arrays["val"], arrays["test"]
    augmentation = cfg.get("augmentation", "standard")
    in_model = bool(cfg.get("augment_in_model", False))
    pretraining, weights = None, results.weights_info("random-init", pretrained=False)
    if cfg.get("pretrain"):
        if pretrain_table is None:
            raise ValueError(f"configuration {cfg['name']!r} has `pretrain` but no "
                             "pretrain_table was given (see common.splits.other_classes)")
        base, pretraining = pretrain(cfg, pretrain_table, seed=seed, verbose=verbose,
                                     cache=cache)
        model = with_new_head(base, len(labels), name=cfg["name"])
        weights = results.weights_info("pretrained-here", pretrained=False,
                                       **{k: pretraining[k] for k in ("classes", "images",
                                                                      "epochs")})
        stats = "of the pretraining set (other classes)"
    else:
        keras.utils.set_random_seed(seed)
        model = build_from_config(cfg, len(labels), x_tr.reshape(-1, 3).astype("float64"))
        stats = "of the training set"
    epochs, batch = int(cfg["epochs"]), int(cfg["batch_size"])
    compile_classifier(model, _optimizer_for(cfg, epochs, -(-len(x_tr) // batch)),
                cfg.get("label_smoothing", 0.0), cfg.get("jit_compile", "auto"))
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    out = train(model, x_tr, t_tr["label"].to_numpy(), x_va, t_va["label"].to_numpy(),
                epochs=epochs, batch_size=batch, verbose=verbose, seed=seed,
                checkpoint_path=model_dir / model_folder.KERAS_FILE,
                augmentation="none" if in_model else augmentation,
                select_from_epoch=cfg.get("select_from_epoch", 1))
    if pretraining:
        out["train_seconds"] += pretraining["seconds"]
    probs = probabilities(out["model"], x_te, batch)
    y_te = t_te["label"].to_numpy()
    model_folder.write_info(model_dir, labels, {
        "framework": "keras", "model_file": model_folder.KERAS_FILE, "image_size": size,
        "crop_mode": mode, "crop_margin": margin,
        "normalisation": f"inside the model: Normalization with the per-channel mean and "
                         f"variance {stats}; input RGB pixels 0..255"})
    run = results.run_record(cfg["name"], cfg, weights, y_te, probs, out, model_dir)
    if pretraining:
        run["pretraining"] = pretraining
    return run, {"x": x_te, "y": y_te, "probs": probs, "table": t_te}
