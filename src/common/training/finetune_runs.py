"""One fine-tuning run of notebooks 03 and 04: the run's share of the task's split, images
at the processor's size, weights (or the visible fallback), ``Trainer`` fine-tuning, test
metrics, saved model folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from common.config.schema import HfNotebook, HfRun
from common.data import images
from common.data.splits import Splits, budget, row_ids
from common.models import folder, hf_classifier
from common.results.contract import run_record
from common.results.records import Run
from common.training import hf_trainer


def save(clf: hf_classifier.Classifier, model_dir: Path, labels: dict[int, tuple[int, str]],
         crop_mode: str) -> Path:
    """Write the model (safetensors), its image processor, ``labels.json`` and
    ``preprocess.json`` to ``model_dir`` (replaced), for :mod:`common.inference.predictor`."""
    model_dir = Path(model_dir)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    clf.model.save_pretrained(model_dir, safe_serialization=True)
    clf.processor.save_pretrained(model_dir)
    folder.write_info(model_dir, labels, {
        "framework": "transformers", "image_size": hf_classifier.input_size(clf.processor),
        "crop_mode": crop_mode, "normalisation": hf_classifier.normalisation(clf.processor),
        "weights": clf.weights})
    return model_dir


def fit_config(cfg: HfRun, parts: Splits, labels: dict[int, tuple[int, str]], p: HfNotebook,
               *, model_dir: Path, progress: bool = False, processes: int = 1
               ) -> tuple[Run, dict]:
    """One run: its share of the task's training and validation sets (``balance``,
    ``cap_per_class``; the test set whole), images at the processor's size, fine-tuning,
    test metrics, saved model folder. ``p``: the notebook's parameters (checkpoint, fallback,
    crop mode...); ``processes``: data-parallel processes
    (:func:`common.training.hf_trainer.fine_tune_processes`).

    Returns the run's :class:`common.results.records.Run` and the test
    data: ``x``, ``y``, ``probs`` (for the figures), ``table`` and the fine-tuned
    :class:`common.models.hf_classifier.Classifier` as ``classifier``.
    """
    import torch

    parts = budget(parts, cfg.cap_per_class, cfg.balance, p.seed)
    clf = hf_classifier.load_classifier(p.checkpoint, labels, profile=p.profile,
                                        fallback=p.fallback, timeout=p.hub_timeout,
                                        seed=p.seed, stand_in=p.dry_run)
    size = hf_classifier.input_size(clf.processor)
    mode, margin = parts.crop
    loaded = {name: images.load_images(getattr(parts, name), size, mode, margin,
                                       progress=progress) for name in ("train", "val", "test")}
    (x_train, t_train), (x_val, t_val), (x_test, t_test) = (loaded[k] for k in
                                                            ("train", "val", "test"))
    fit = hf_trainer.fine_tune_processes(clf, x_train, t_train["label"].to_numpy(), x_val,
                                         t_val["label"].to_numpy(), cfg, seed=p.seed,
                                         progress=progress, processes=processes,
                                         x_test=x_test)
    y_test = t_test["label"].to_numpy()
    probs = fit.pop("test_probabilities")
    save(clf, model_dir, labels, mode)
    params = {**cfg.model_dump(mode="json", exclude={"name"}),
              **fit["settings"].model_dump(mode="json"),
              "checkpoint": str(p.checkpoint), "image_size": size, "crop_mode": mode,
              "model_parameters": int(sum(t.numel() for t in clf.model.parameters())),
              "split_sizes": {"train": len(x_train), "val": len(x_val), "test": len(x_test)},
              "best_epoch": fit["best_epoch"], "world_size": fit["world_size"],
              "torch_threads": torch.get_num_threads(),
              "global_batch_size": fit["settings"].batch_size,
              "per_process_batch_size": fit["per_process_batch_size"]}
    record = run_record(cfg.name, params, clf.weights, y_test, probs, fit, model_dir,
                        images=row_ids(t_test))
    test = {"x": x_test, "y": y_test, "probs": probs, "table": t_test, "classifier": clf}
    return record, test
