"""One fine-tuning run of notebooks 03 and 04: splits, images at the processor's size,
weights (or the visible fallback), ``Trainer`` fine-tuning, test metrics, saved model folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from common import hf_training, hf_weights, images, model_folder, results, splits


def save(clf: hf_weights.Classifier, model_dir: Path, labels: dict[int, tuple[int, str]],
         crop_mode: str) -> Path:
    """Write the model (safetensors), its image processor, ``labels.json`` and
    ``preprocess.json`` to ``model_dir`` (replaced), for :mod:`common.predict`."""
    model_dir = Path(model_dir)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    clf.model.save_pretrained(model_dir, safe_serialization=True)
    clf.processor.save_pretrained(model_dir)
    model_folder.write_info(model_dir, labels, {
        "framework": "transformers", "image_size": hf_weights.input_size(clf.processor),
        "crop_mode": crop_mode, "normalisation": hf_weights.normalisation(clf.processor),
        "weights": clf.weights})
    return model_dir


def fit_config(cfg: dict, table, labels: dict[int, tuple[int, str]], *, checkpoint: str,
               profile: str, fallback: dict | None, model_dir: Path, seed: int = 0,
               val_fraction: float = 0.15, test_fraction: float = 0.15,
               crop_mode: str = "squash", timeout: float = hf_weights.HUB_TIMEOUT,
               progress: bool = False, limits: dict | None = None,
               stand_in: bool = False, processes: int = 1) -> tuple[dict, dict]:
    """One run: splits (``cfg["balance"]``, ``cfg["cap"]``), images at the processor's size,
    fine-tuning, test metrics, saved model folder.

    Returns the results record (the contract of :mod:`common.results`) and the test data:
    ``x``, ``y``, ``probs`` (for the figures), ``table``, ``splits`` and the fine-tuned
    :class:`common.hf_weights.Classifier` as ``classifier``. ``cfg`` was checked by
    :mod:`common.config`. ``limits`` (a dry run): at most so many images per split
    (:func:`common.splits.limit`); ``stand_in``: see :func:`common.hf_weights.load_classifier`;
    ``processes``: data-parallel processes (:func:`common.hf_training.fine_tune_processes`).
    """
    parts = splits.make_splits(table, val_fraction=val_fraction, test_fraction=test_fraction,
                               seed=seed, cap=cfg.get("cap"), balance=bool(cfg.get("balance")))
    if limits:
        parts = splits.limit(parts, **limits, seed=seed)
    clf = hf_weights.load_classifier(checkpoint, labels, profile=profile, fallback=fallback,
                                     timeout=timeout, seed=seed, stand_in=stand_in)
    size = hf_weights.input_size(clf.processor)
    loaded = {name: images.load_images(getattr(parts, name), size, crop_mode,
                                       progress=progress) for name in ("train", "val", "test")}
    (x_train, t_train), (x_val, t_val), (x_test, t_test) = (loaded[k] for k in
                                                            ("train", "val", "test"))
    fit = hf_training.fine_tune_processes(clf, x_train, t_train["label"].to_numpy(), x_val,
                                          t_val["label"].to_numpy(), cfg, seed=seed,
                                          progress=progress, processes=processes)
    y_test = t_test["label"].to_numpy()
    probs = hf_training.predict_probs(clf.model, clf.processor, x_test,
                                      batch_size=int(fit["settings"]["eval_batch_size"]))
    save(clf, model_dir, labels, crop_mode)
    params = {**{k: v for k, v in cfg.items() if k != "name"}, **fit["settings"],
              "checkpoint": str(checkpoint), "image_size": size, "crop_mode": crop_mode,
              "model_parameters": int(sum(p.numel() for p in clf.model.parameters())),
              "split_sizes": {"train": len(x_train), "val": len(x_val), "test": len(x_test)},
              "best_epoch": fit["best_epoch"], "world_size": fit["world_size"],
              "global_batch_size": int(fit["settings"]["batch_size"]) * fit["world_size"]}
    record = results.run_record(cfg["name"], params, clf.weights, y_test, probs, fit, model_dir)
    test = {"x": x_test, "y": y_test, "probs": probs, "table": t_test, "splits": parts,
            "classifier": clf}
    return record, test
