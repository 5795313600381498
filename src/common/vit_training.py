"""One configuration of a from-scratch ViT sweep (notebooks 01 and 02): build it (or start
from another run's network), train, evaluate on the test split, save the model folder.

A configuration is a dict of the notebook's parameter file (merged with its defaults and
checked by :mod:`common.config`): ``name``, ``image_size``, ``patch_size``, ``epochs``,
``batch_size`` and optionally every other :func:`common.vit.build_vit` /
:func:`common.keras_training.make_optimizer` argument, plus ``crop_mode``, ``crop_margin``,
``label_smoothing``, ``warmup_epochs``, ``schedule``, ``select_from_epoch``,
``augment_in_model``, ``jit_compile``, ``init_from`` (the run of notebook 01 whose
network this one starts from) and ``test_time_flip`` (test probabilities averaged over each
image and its mirror image; the checkpoint is still chosen on plain validation accuracy).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from common import images, model_folder, results
from common.keras_training import compile_classifier, make_optimizer, probabilities, train
from common.splits import cap_per_class
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


def fit_config(cfg: dict, splits, *, labels: dict, model_dir, seed: int = 0, verbose: int = 2,
               cache=True, init_from: Path | None = None) -> tuple[dict, dict]:
    """Train and evaluate one configuration of a notebook's sweep; save its model folder.

    ``cfg`` holds ``name``, ``image_size``, ``patch_size``, ``epochs``, ``batch_size`` and
    optionally the keys listed in the module docstring (``cap``: at most so many training
    and validation images per class, the test set kept whole). ``init_from``: a model folder of
    another run (01's network, for 02): its network, every layer but the output, starts this
    run with a new head for ``labels``. ``labels``: 0-based label -> (class id, name).
    Returns the run record of the results contract and the test arrays and probabilities.
    """
    size, mode = int(cfg["image_size"]), cfg.get("crop_mode", "squash")
    margin = float(cfg.get("crop_margin", 0.1))
    if cfg.get("cap"):
        splits = cap_per_class(splits, int(cfg["cap"]), seed)
    arrays = {k: images.load_images(getattr(splits, k), size, mode, margin, cache=cache)
              for k in ("train", "val", "test")}
    (x_tr, t_tr), (x_va, t_va), (x_te, t_te) = arrays["train"], arrays["val"], arrays["test"]
    augmentation = cfg.get("augmentation", "standard")
    in_model = bool(cfg.get("augment_in_model", False))
    keras.utils.set_random_seed(seed)
    if init_from is not None:
        base = _load_network(Path(init_from), size)
        model = with_new_head(base, len(labels), name=cfg["name"])
        weights = results.weights_info(
            "pretrained-here", pretrained=False, classes=int(base.output_shape[-1]),
            **{"from": f"{Path(init_from).parent.name}/{Path(init_from).name}"})
        stats = f"of the training set of {Path(init_from).parent.name}"
    else:
        model = build_from_config(cfg, len(labels), x_tr.reshape(-1, 3).astype("float64"))
        weights = results.weights_info("random-init", pretrained=False)
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
    probs = probabilities(out["model"], x_te, batch, flip=bool(cfg.get("test_time_flip")))
    y_te = t_te["label"].to_numpy()
    model_folder.write_info(model_dir, labels, {
        "framework": "keras", "model_file": model_folder.KERAS_FILE, "image_size": size,
        "crop_mode": mode, "crop_margin": margin,
        "normalisation": f"inside the model: Normalization with the per-channel mean and "
                         f"variance {stats}; input RGB pixels 0..255"})
    run = results.run_record(cfg["name"], cfg, weights, y_te, probs, out, model_dir)
    return run, {"x": x_te, "y": y_te, "probs": probs, "table": t_te}


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
