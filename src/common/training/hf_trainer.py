"""Fine-tuning a Hugging Face image classifier with the ``Trainer``.

:func:`fine_tune` runs the ``Trainer`` (evaluation every epoch, the weights of the best
epoch on validation accuracy kept and restored), with a random resized crop and horizontal
flip done with Pillow before the image processor (resize, rescale, normalise), and returns
the per-epoch history of the results contract; :func:`fine_tune_processes` runs it in
several data-parallel processes.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common.config.schema import HfTraining
from common.core import runtime
from common.core.accelerators import describe
from common.models.hf_classifier import Classifier


# --------------------------------------------------------------------------- data

class Augment:
    """Random resized crop (the Inception / torchvision recipe) and horizontal flip with
    Pillow, on ``uint8`` (H, W, 3) images; the output has the input's size.

    Random numbers come from torch, which the ``Trainer`` seeds, and which the data loader
    seeds differently in each worker.
    """

    def __init__(self, flip: bool = True, crop_scale=(0.8, 1.0), ratio=(3 / 4, 4 / 3)):
        self.flip = bool(flip)
        self.crop_scale = tuple(crop_scale) if crop_scale else None
        self.ratio = tuple(ratio)

    def _box(self, w: int, h: int):
        import torch

        area = w * h
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * torch.empty(1).uniform_(*self.crop_scale).item()
            aspect = math.exp(torch.empty(1).uniform_(*log_ratio).item())
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                left = int(torch.randint(0, w - cw + 1, (1,)).item())
                top = int(torch.randint(0, h - ch + 1, (1,)).item())
                return (left, top, left + cw, top + ch)
        return (0, 0, w, h)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch
        from PIL import Image

        im = Image.fromarray(image)
        if self.crop_scale:
            im = im.resize(im.size, Image.Resampling.BICUBIC, box=self._box(*im.size))
        if self.flip and torch.rand(1).item() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return np.asarray(im)


class ImageDataset:
    """``uint8`` images and 0-based labels as a map-style dataset of ``{"image", "label"}``."""

    def __init__(self, x: np.ndarray, y, augment: Augment | None = None):
        self.x, self.y, self.augment = x, np.asarray(y, dtype=np.int64), augment

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        image = self.x[i]
        return {"image": self.augment(image) if self.augment else image, "label": int(self.y[i])}


class Collator:
    """A batch of ``{"image", "label"}`` through the image processor."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, batch):
        import torch

        inputs = self.processor(images=[b["image"] for b in batch], return_tensors="pt")
        return {"pixel_values": inputs["pixel_values"],
                "labels": torch.tensor([b["label"] for b in batch], dtype=torch.long)}


# --------------------------------------------------------------------------- training

def _accuracy(eval_pred) -> dict:
    logits, y = eval_pred
    logits = logits[0] if isinstance(logits, (tuple, list)) else logits
    return {"accuracy": float((np.asarray(logits).argmax(-1) == np.asarray(y)).mean())}


def _precision(mixed: bool) -> dict:
    """bf16 autocast (fp16 on a GPU without bf16); on a CPU, bf16 autocast too."""
    import torch

    if not mixed:
        return {}
    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return {"fp16": True}
    return {"bf16": True}


def per_process_batch(batch_size: int, processes: int) -> int:
    """The images per step of each of ``processes`` data-parallel processes, so that the
    global batch (and with it the number of steps, the warmup and the schedule) stays the
    parameter file's ``batch_size``. Raises ValueError when it does not divide evenly."""
    if processes < 1 or batch_size % processes:
        raise ValueError(f"batch_size {batch_size} does not split over {processes} processes: "
                         f"set processes to a divisor of it")
    return batch_size // processes


def _training_arguments(cfg: HfTraining, output_dir: Path, seed: int, progress: bool,
                        processes: int = 1):
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    ratio = float(cfg.warmup_ratio)
    # transformers 4 has warmup_ratio; transformers 5 reads a warmup_steps below 1 as a ratio
    warmup = {"warmup_ratio" if "warmup_ratio" in names else "warmup_steps": ratio}
    import torch

    workers = int(cfg.dataloader_workers)
    return TrainingArguments(
        output_dir=str(output_dir), eval_strategy="epoch", logging_strategy="epoch",
        # The best epoch is kept in memory by KeepBest, not by load_best_model_at_end: in
        # transformers 5, save_pretrained writes the hub's key names while the Trainer's
        # _load_best_model loads them with a plain load_state_dict (no key conversion), so
        # for ViT it silently keeps the last epoch (huggingface/transformers#48805).
        save_strategy="no", load_best_model_at_end=False,
        metric_for_best_model="val_accuracy", greater_is_better=True,
        num_train_epochs=float(cfg.epochs),
        per_device_train_batch_size=per_process_batch(int(cfg.batch_size), processes),
        per_device_eval_batch_size=max(1, int(cfg.eval_batch_size) // processes),
        learning_rate=float(cfg.learning_rate), weight_decay=float(cfg.weight_decay),
        lr_scheduler_type=cfg.scheduler, label_smoothing_factor=float(cfg.label_smoothing),
        dataloader_num_workers=workers, dataloader_persistent_workers=workers > 0,
        dataloader_pin_memory=torch.cuda.is_available(),
        # without a GPU, data-parallel processes (fine_tune_processes) talk over gloo
        use_cpu=not torch.cuda.is_available(),
        ddp_backend="gloo" if not torch.cuda.is_available()
        and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        remove_unused_columns=False, report_to="none", seed=int(seed), data_seed=int(seed),
        torch_compile=bool(cfg.torch_compile),
        disable_tqdm=not progress, **warmup, **_precision(bool(cfg.mixed_precision)))


def use_settings(model, cfg: HfTraining) -> None:
    """The speed settings of a run: the model's attention implementation ("sdpa": PyTorch's
    fused attention) and, on a GPU, TF32 matmuls."""
    import torch

    if model.config._attn_implementation != cfg.attention:
        model.set_attn_implementation(cfg.attention)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = bool(cfg.tf32)
        torch.backends.cudnn.allow_tf32 = bool(cfg.tf32)


def _keep_best(metric: str = "eval_val_accuracy"):
    """A Trainer callback keeping a CPU copy of the weights of the best evaluation so far
    (first best on ties, as Keras' ModelCheckpoint(save_best_only=True))."""
    from transformers import TrainerCallback

    class KeepBest(TrainerCallback):
        def __init__(self):
            self.best, self.epoch, self.state_dict = -math.inf, None, None

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
            value = (metrics or {}).get(metric)
            if value is not None and model is not None and value > self.best:
                self.best, self.epoch = float(value), state.epoch
                self.state_dict = {k: v.detach().to("cpu", copy=True)
                                   for k, v in model.state_dict().items()}

    return KeepBest()


def _clock():
    """A Trainer callback timing the training part of each epoch (evaluation excluded)."""
    from transformers import TrainerCallback

    class EpochClock(TrainerCallback):
        def __init__(self):
            self.epoch_seconds: list[float] = []

        @staticmethod
        def _sync():
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()

        def on_epoch_begin(self, args, state, control, **kwargs):
            self._sync()
            self._t = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kwargs):  # before the evaluation
            self._sync()
            self.epoch_seconds.append(time.perf_counter() - self._t)

    return EpochClock()


def history_from_logs(log_history: list[dict]) -> dict:
    """Per-epoch ``loss``, ``val_loss``, ``accuracy`` and ``val_accuracy`` from the Trainer's
    ``log_history`` (see :func:`fine_tune` for what each one measures)."""
    loss = [float(e["loss"]) for e in log_history if "loss" in e and "eval_val_loss" not in e]
    val = [e for e in log_history if "eval_val_accuracy" in e]
    train = [e for e in log_history if "eval_train_accuracy" in e]
    n = min(len(loss), len(val), len(train))
    return {"loss": loss[:n],
            "val_loss": [float(e["eval_val_loss"]) for e in val[:n]],
            "accuracy": [float(e["eval_train_accuracy"]) for e in train[:n]],
            "val_accuracy": [float(e["eval_val_accuracy"]) for e in val[:n]]}


def fine_tune(clf: Classifier, x_train, y_train, x_val, y_val, cfg: HfTraining, *,
              seed: int = 0, processes: int = 1,
              work_dir: Path | None = None, progress: bool = False, callbacks=()) -> dict:
    """Fine-tune ``clf.model`` with the ``Trainer``; keep the best epoch on validation.

    ``cfg``: the run's settings (the fallback's ``training`` settings replace them).
    Returns ``history`` (per epoch: ``loss``, the Trainer's mean training loss over the
    epoch's batches, augmented, dropout on; ``val_loss`` and ``val_accuracy`` on the
    validation set; ``accuracy``, measured at the end of each epoch in evaluation mode, without
    augmentation, on a fixed random subset of ``train_eval_images`` training images, not on
    the whole training set), ``best_val_accuracy``, ``best_epoch``, ``checkpoint_rule`` (the
    best epoch is the highest ``val_accuracy`` of all), ``train_seconds`` (the
    whole ``train()``, evaluations and checkpoints included), ``train_images_per_second``
    (training images over the training part of the epochs only, the first epoch, the
    warm-up, left out when there are several, as Keras' rate does), ``settings`` (what was
    used), ``world_size`` (processes that trained together) and ``trained_on`` (the device
    of the weights while training). ``cfg.batch_size`` is the global batch: each of the
    ``processes`` takes its share (:func:`per_process_batch`). The weights of the best
    epoch are loaded back into ``clf.model``; the Trainer's output folder (``work_dir``,
    temporary by default) is deleted. ``callbacks``: more ``TrainerCallback`` objects (the
    GPU check's step clock).
    """
    from transformers import Trainer

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # one process: refused when it sees several GPUs (nn.DataParallel would multiply
        # the batch); CUDA_VISIBLE_DEVICES pins one
        runtime.training_processes(1, [int(cfg.batch_size)])
    cfg = HfTraining.model_validate({**cfg.model_dump(include=set(HfTraining.model_fields)),
                                     **clf.training})
    rng = np.random.default_rng(seed)
    subset = np.sort(rng.choice(len(x_train), min(int(cfg.train_eval_images), len(x_train)),
                                replace=False))
    augment = Augment(cfg.flip, cfg.crop_scale) if cfg.flip or cfg.crop_scale else None
    train_ds = ImageDataset(x_train, y_train, augment)
    evals = {"val": ImageDataset(x_val, y_val),
             "train": ImageDataset(x_train[subset], np.asarray(y_train)[subset])}
    clock, keep = _clock(), _keep_best()
    use_settings(clf.model, cfg)
    own_dir = work_dir is None
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="hf-trainer-"))
    try:
        trainer = Trainer(model=clf.model,
                          args=_training_arguments(cfg, work_dir, seed, progress,
                                                   processes),
                          data_collator=Collator(clf.processor), train_dataset=train_ds,
                          eval_dataset=evals, compute_metrics=_accuracy,
                          callbacks=[clock, keep, *callbacks])
        t0 = time.perf_counter()
        trainer.train()
        device = describe(next(trainer.model.parameters()).device)
        if keep.state_dict is not None:
            trainer.model.load_state_dict(keep.state_dict)
        train_seconds = time.perf_counter() - t0
        history = history_from_logs(trainer.state.log_history)
    finally:
        if own_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    clf.model = trainer.model.eval()
    best = int(np.argmax(history["val_accuracy"]))
    timed = clock.epoch_seconds[1:] if len(clock.epoch_seconds) > 1 else clock.epoch_seconds
    return {"history": history, "best_val_accuracy": float(history["val_accuracy"][best]),
            "best_epoch": best + 1, "train_seconds": float(train_seconds),
            "checkpoint_rule": {"metric": "val_accuracy", "from_epoch": 1},
            "train_images_per_second": float(len(x_train) * len(timed)
                                             / max(sum(timed), 1e-9)),
            "settings": cfg, "world_size": int(trainer.args.world_size),
            "per_process_batch_size": int(trainer.args.per_device_train_batch_size),
            "epoch_seconds": list(clock.epoch_seconds), "trained_on": {"torch": device}}


def fine_tune_processes(clf: Classifier, x_train, y_train, x_val, y_val, cfg: HfTraining, *,
                        processes: int, seed: int = 0, progress: bool = False,
                        x_test=None) -> dict:
    """:func:`fine_tune` in ``processes`` processes (one per GPU, or CPU processes talking
    over gloo) started from the notebook by ``accelerate.notebook_launcher``; the ``Trainer``
    in each joins the same data-parallel training. The main process' weights are loaded
    back into ``clf.model`` and its results are returned, as :func:`fine_tune` does, with
    ``test_probabilities``, the class probabilities of ``x_test`` (when given) from the
    fine-tuned model.

    The launcher forks the calling process, so this process never initialises CUDA: the
    test images are scored by the main training process, on its GPU, and ``clf.model``
    comes back on the CPU (a second run of the notebook forks again). With one process,
    everything runs here, and the model stays where the Trainer put it."""
    import torch
    from accelerate import notebook_launcher

    from common.inference.probabilities import hf_probabilities

    if processes < 2:
        fit = fine_tune(clf, x_train, y_train, x_val, y_val, cfg, seed=seed, progress=progress)
        if x_test is not None:
            fit["test_probabilities"] = hf_probabilities(
                clf.model, clf.processor, x_test, batch_size=fit["settings"].eval_batch_size)
        return fit
    per_process_batch(int(cfg.batch_size), processes)  # before starting any process
    with tempfile.TemporaryDirectory(prefix="fine-tune-") as tmp:
        out = Path(tmp) / "main.pt"
        notebook_launcher(_fine_tune_and_save, args=(clf, x_train, y_train, x_val, y_val, cfg,
                                                     seed, progress, str(out), processes,
                                                     x_test),
                          num_processes=int(processes))
        if not out.is_file():
            raise RuntimeError(f"the {processes} fine-tuning processes ended without a result")
        saved = torch.load(out, map_location="cpu", weights_only=False)
    clf.model.load_state_dict(saved["state_dict"])
    clf.model.eval()
    return saved["fit"]


def _fine_tune_and_save(clf, x_train, y_train, x_val, y_val, cfg, seed, progress, out,
                        processes, x_test=None):
    """One process of :func:`fine_tune_processes`; the main one scores ``x_test`` and saves
    what it got."""
    import torch
    from accelerate import PartialState

    from common.inference.probabilities import hf_probabilities

    fit = fine_tune(clf, x_train, y_train, x_val, y_val, cfg, seed=seed, progress=progress,
                    processes=processes)
    if PartialState().is_main_process:
        if x_test is not None:
            fit["test_probabilities"] = hf_probabilities(
                clf.model, clf.processor, x_test, batch_size=fit["settings"].eval_batch_size)
        torch.save({"fit": fit, "state_dict": {k: v.detach().cpu() for k, v in
                                               clf.model.state_dict().items()}}, out)
