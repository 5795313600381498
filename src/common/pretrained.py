"""Fine-tuning a pretrained Vision Transformer with Hugging Face transformers.

What the fine-tuning notebooks (03 and 04) compute, so that they only narrate:

- :func:`load_classifier`: the pretrained checkpoint (a hub id or a local folder written by
  ``save_pretrained``) with a new classification head; loading never runs remote code
  (``trust_remote_code=False``) and never unpickles (``use_safetensors=True``). When the
  weights cannot be had, the ``gpu`` profile stops with :class:`PretrainedUnavailable` (what
  failed and how to fix it); the ``smoke`` and ``cpu`` profiles fall back to a small randomly
  initialised ViT and say so in ``Classifier.weights``
  (``random-init (pretrained unavailable: <reason>)``). An unreachable hub is detected in
  well under a second by one short request (:func:`locate`), not by ``from_pretrained``'s
  retries.
- :func:`fine_tune`: the ``Trainer`` (evaluation every epoch, the weights of the best epoch
  on validation accuracy kept and restored), with a random resized crop and horizontal flip
  done with Pillow before the image processor (resize, rescale, normalise), and the
  per-epoch history of the results contract.
- :func:`fit_config`: one run of a notebook (splits, images, model, training, test metrics,
  saved model folder) as a results record.
- :func:`attention_rollout` / :func:`attention_maps`: attention rollout (Abnar & Zuidema,
  2020) over the layers of the fine-tuned model.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# torch's OpenMP threads spin while they wait for each other; on a small CPU shared with
# other processes, that made training 5-40 times slower (measured on 2 shared cores).
# Passive waiting costs little otherwise. It only takes effect if set before torch starts,
# which is why this module (imported by the notebooks before torch) sets it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

FALLBACK_PROFILES = ("smoke", "cpu")  # the gpu profile never trains from scratch silently
RANDOM_INIT = "random-init"
HUB_TIMEOUT = 10.0

TRAIN_DEFAULTS = {
    "epochs": 3,
    "batch_size": 32,
    "eval_batch_size": 64,
    "learning_rate": 2e-5,
    "weight_decay": 0.0,
    "warmup_ratio": 0.1,
    "scheduler": "linear",
    "label_smoothing": 0.0,
    "flip": True,  # random horizontal flip
    "crop_scale": [0.8, 1.0],  # random resized crop: area fraction kept; null: no crop
    "train_eval_images": 512,  # fixed training subset measured each epoch (train accuracy)
    "mixed_precision": False,  # bf16 (or fp16 when the GPU has no bf16) on a GPU only
    "dataloader_workers": 0,
}


RUN_KEYS = {"name", "balance", "cap"}  # a run's own keys, beside the training settings


class PretrainedUnavailable(RuntimeError):
    """The pretrained weights cannot be loaded; ``reason`` says why in one line."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


def _why(exc: BaseException, width: int = 160) -> str:
    """One short line for an exception: its type and the first line of its message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= width else text[: width - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------- locating weights

def _looks_local(checkpoint: str) -> bool:
    return checkpoint.startswith(("/", "./", "../", "~")) or Path(checkpoint).expanduser().exists()


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _offline() -> bool:
    from huggingface_hub import constants

    check = getattr(constants, "is_offline_mode", None)
    return bool(check() if callable(check) else constants.HF_HUB_OFFLINE)


@functools.lru_cache(maxsize=32)
def locate(checkpoint: str, timeout: float = HUB_TIMEOUT) -> tuple[str, bool, str | None]:
    """Where to load ``checkpoint`` from, decided fast.

    Returns ``(source, local_files_only, hub_problem)``: a local folder is used as it is; a hub
    id is checked with one request of at most ``timeout`` seconds. When the hub cannot be
    reached (or ``HF_HUB_OFFLINE`` is set), loading goes on from the local cache only and
    ``hub_problem`` says why. Raises :class:`PretrainedUnavailable` when the weights surely
    cannot be loaded (a missing or incomplete folder, an unknown repository, a repository
    without safetensors weights).
    """
    checkpoint = str(checkpoint)
    if _looks_local(checkpoint):
        folder = Path(checkpoint).expanduser()
        if not folder.is_dir():
            raise PretrainedUnavailable(f"local checkpoint folder {folder} does not exist")
        if not (folder / "config.json").is_file():
            raise PretrainedUnavailable(
                f"{folder} has no config.json (not a save_pretrained folder)")
        if not any(folder.glob("*.safetensors")):
            raise PretrainedUnavailable(
                f"{folder} has no .safetensors weights (this project never unpickles .bin files)")
        return str(folder), True, None
    if _offline():
        return checkpoint, True, "HF_HUB_OFFLINE is set"
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        info = HfApi().model_info(checkpoint, timeout=timeout)
    except GatedRepoError as exc:
        raise PretrainedUnavailable(f"{checkpoint} is gated on the hub ({_why(exc, 80)})") from exc
    except RepositoryNotFoundError as exc:
        raise PretrainedUnavailable(f"{checkpoint} not found on the hub") from exc
    except Exception as exc:  # noqa: BLE001 (network errors differ between hub versions)
        return checkpoint, True, f"hub unreachable ({_why(exc, 100)})"
    files = [s.rfilename for s in (info.siblings or [])]
    if files and not any(f.endswith(".safetensors") for f in files):
        raise PretrainedUnavailable(
            f"{checkpoint} has no .safetensors weights on the hub (this project never "
            "unpickles .bin files)")
    return checkpoint, False, None


def refusal(checkpoint: str, reason: str, profile: str) -> str:
    """The error of a profile that must not fall back: what failed and how to fix it."""
    return (
        f"cannot load the pretrained weights {checkpoint!r}: {reason}. The {profile!r} profile "
        "never trains from scratch. Fix one of: give this machine network access to the "
        "Hugging Face hub; or fill the cache on a machine that has it (`hf download "
        f"{checkpoint}`, then copy the cache and point HF_HOME at it; cache now: "
        f"{_hub_cache()}); or set the notebook parameter `checkpoint` to a local folder "
        "written by save_pretrained (model.safetensors, config.json, preprocessor_config.json).")


# --------------------------------------------------------------------------- models

@dataclass
class Classifier:
    """A model ready to fine-tune, its image processor, and where its weights came from."""

    model: object
    processor: object
    weights: str  # the checkpoint, or "random-init (pretrained unavailable: <reason>)"
    checkpoint: str
    reason: str | None = None  # why the pretrained weights were not used
    training: dict = field(default_factory=dict)  # training overrides of the fallback

    @property
    def pretrained(self) -> bool:
        return self.reason is None


def _id2label(labels: dict[int, tuple[int, str]]) -> tuple[dict, dict]:
    id2label = {int(i): str(name) for i, (_, name) in sorted(labels.items())}
    return id2label, {name: i for i, name in id2label.items()}


def _image_processor_class():
    """ViT's image processor; its Pillow backend when torchvision is missing (transformers 5)."""
    import transformers
    from transformers.utils import is_torchvision_available

    if not is_torchvision_available() and hasattr(transformers, "ViTImageProcessorPil"):
        return transformers.ViTImageProcessorPil
    return transformers.ViTImageProcessor


def simple_processor(image_size: int):
    """Resize to ``image_size`` squared, rescale to 0..1, normalise with mean = std = 0.5."""
    return _image_processor_class()(do_resize=True, size={"height": int(image_size),
                                                          "width": int(image_size)},
                                    image_mean=[0.5] * 3, image_std=[0.5] * 3)


def _load_processor(source: str, local_only: bool, model):
    from transformers import AutoImageProcessor

    kwargs = {"local_files_only": local_only}
    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:
        kwargs["use_fast"] = True  # transformers 5 picks the fast (torchvision) one by itself
    try:
        return AutoImageProcessor.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        print(f"warning: no image processor in {source} ({_why(exc, 80)}); using a plain "
              f"resize to {model.config.image_size} px and mean = std = 0.5")
        return simple_processor(model.config.image_size)


def load_pretrained(checkpoint: str, labels: dict[int, tuple[int, str]],
                    timeout: float = HUB_TIMEOUT):
    """The pretrained model (new head for ``labels``) and its image processor.

    Raises :class:`PretrainedUnavailable` with a one-line reason when they cannot be loaded.
    """
    from transformers import AutoModelForImageClassification

    source, local_only, hub_problem = locate(str(checkpoint), timeout)
    id2label, label2id = _id2label(labels)
    try:
        model = AutoModelForImageClassification.from_pretrained(
            source, id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True,
            trust_remote_code=False, use_safetensors=True, local_files_only=local_only,
            attn_implementation="eager")  # eager attention returns the attention weights
    except Exception as exc:  # OSError, ValueError... from the loaders
        if hub_problem:
            raise PretrainedUnavailable(
                f"{hub_problem}; not in the local cache {_hub_cache()}") from exc
        raise PretrainedUnavailable(_why(exc)) from exc
    return model, _load_processor(source, local_only, model)


def random_init(config: dict, labels: dict[int, tuple[int, str]]):
    """A randomly initialised ViT (``ViTConfig`` keywords) and its simple image processor."""
    from transformers import AutoModelForImageClassification, ViTConfig

    id2label, label2id = _id2label(labels)
    vit_config = ViTConfig(**config, id2label=id2label, label2id=label2id)
    model = AutoModelForImageClassification.from_config(vit_config, attn_implementation="eager")
    return model, simple_processor(vit_config.image_size)


def load_classifier(checkpoint: str, labels: dict[int, tuple[int, str]], *, profile: str,
                    fallback: dict | None = None, timeout: float = HUB_TIMEOUT,
                    seed: int = 0) -> Classifier:
    """The model to fine-tune: the pretrained ``checkpoint`` or, for the smoke and cpu
    profiles only, the fallback ViT of ``fallback["config"]`` (``ViTConfig`` keywords;
    ``fallback["training"]``: training settings that replace the pretrained ones).

    Raises :class:`PretrainedUnavailable` (what failed, how to fix it) when the weights cannot
    be loaded and the profile may not fall back (gpu) or no fallback is given.
    """
    from transformers import set_seed

    set_seed(seed)  # the new classification head (or the whole fallback model) is random
    try:
        model, processor = load_pretrained(checkpoint, labels, timeout)
        return Classifier(model, processor, weights=str(checkpoint), checkpoint=str(checkpoint))
    except PretrainedUnavailable as exc:
        if profile not in FALLBACK_PROFILES or not fallback:
            raise PretrainedUnavailable(refusal(str(checkpoint), exc.reason, profile),
                                        exc.reason) from exc
        model, processor = random_init(dict(fallback["config"]), labels)
        return Classifier(model, processor, checkpoint=str(checkpoint), reason=exc.reason,
                          weights=f"{RANDOM_INIT} (pretrained unavailable: {exc.reason})",
                          training=dict(fallback.get("training") or {}))


def weights_status(checkpoint: str, *, profile: str, fallback: dict | None = None,
                   timeout: float = HUB_TIMEOUT) -> dict:
    """Check, before any work, that the weights can be had (loads them once).

    Returns ``{"pretrained": bool, "weights": str, "reason": str | None, "parameters": int}``
    for a model with two classes; raises :class:`PretrainedUnavailable` like
    :func:`load_classifier`.
    """
    clf = load_classifier(checkpoint, {0: (1, "a"), 1: (2, "b")}, profile=profile,
                          fallback=fallback, timeout=timeout)
    return {"pretrained": clf.pretrained, "weights": clf.weights, "reason": clf.reason,
            "parameters": int(sum(p.numel() for p in clf.model.parameters()))}


def status_markdown(status: dict, checkpoint: str, fallback: dict | None) -> str:
    """What a notebook tells its reader about the weights (French Markdown): the checkpoint
    loaded, or a visible warning that a small randomly initialised ViT replaces it."""
    if status["pretrained"]:
        return (f"Poids pré-entraînés : `{status['weights']}` "
                f"({status['parameters'] / 1e6:.1f} millions de paramètres).")
    fallback = fallback or {}
    arch = ", ".join(f"{k} = {v}" for k, v in fallback.get("config", {}).items())
    return (f"> **⚠️ Avertissement : poids pré-entraînés indisponibles.** Le point de départ "
            f"`{checkpoint}` n'a pas pu être chargé ({status['reason']}).\n>\n"
            f"> Ce notebook entraîne donc **un petit ViT initialisé au hasard** ({arch}), avec "
            f"les réglages d'entraînement `{fallback.get('training', {})}`. Ses chiffres ne "
            "disent rien du fine-tuning : ils montrent seulement que la chaîne tourne de bout "
            "en bout. Les résultats l'indiquent dans le champ `weights`.")


def set_threads(n: int | None) -> int:
    """Use ``n`` torch threads (None: leave torch's default); return the number in use.

    On a small shared CPU, one thread can be many times faster than two for a tiny model:
    threads that wait for each other spin while another process holds a core."""
    import torch

    if n:
        torch.set_num_threads(int(n))
    return torch.get_num_threads()


def input_size(processor) -> int:
    """The square size to decode images at: the processor's resize target (it may then
    centre-crop, as DeiT's does)."""
    size = processor.size
    get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    for key in ("height", "shortest_edge", "width"):
        if get(key):
            return int(get(key))
    raise ValueError(f"cannot tell the image size of processor size {size!r}")


def normalisation(processor) -> dict:
    return {"rescale_factor": float(getattr(processor, "rescale_factor", 1 / 255)),
            "mean": [float(v) for v in processor.image_mean],
            "std": [float(v) for v in processor.image_std]}


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
    import torch

    if not (mixed and torch.cuda.is_available()):
        return {}
    return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}


def _training_arguments(cfg: dict, output_dir: Path, seed: int, progress: bool):
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    ratio = float(cfg["warmup_ratio"] or 0.0)
    # transformers 4 has warmup_ratio; transformers 5 reads a warmup_steps below 1 as a ratio
    warmup = {"warmup_ratio" if "warmup_ratio" in names else "warmup_steps": ratio}
    import torch

    workers = int(cfg["dataloader_workers"])
    return TrainingArguments(
        output_dir=str(output_dir), eval_strategy="epoch", logging_strategy="epoch",
        # The best epoch is kept in memory by KeepBest, not by load_best_model_at_end: in
        # transformers 5, save_pretrained writes the hub's key names while the Trainer's
        # _load_best_model loads them with a plain load_state_dict (no key conversion), so
        # for ViT it silently keeps the last epoch (huggingface/transformers#48805).
        save_strategy="no", load_best_model_at_end=False,
        metric_for_best_model="val_accuracy", greater_is_better=True,
        num_train_epochs=float(cfg["epochs"]),
        per_device_train_batch_size=int(cfg["batch_size"]),
        per_device_eval_batch_size=int(cfg["eval_batch_size"]),
        learning_rate=float(cfg["learning_rate"]), weight_decay=float(cfg["weight_decay"]),
        lr_scheduler_type=cfg["scheduler"], label_smoothing_factor=float(cfg["label_smoothing"]),
        dataloader_num_workers=workers, dataloader_persistent_workers=workers > 0,
        dataloader_pin_memory=torch.cuda.is_available(),
        remove_unused_columns=False, report_to="none", seed=int(seed), data_seed=int(seed),
        disable_tqdm=not progress, **warmup, **_precision(bool(cfg["mixed_precision"])))


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


def fine_tune(clf: Classifier, x_train, y_train, x_val, y_val, cfg: dict, *, seed: int = 0,
              work_dir: Path | None = None, progress: bool = False) -> dict:
    """Fine-tune ``clf.model`` with the ``Trainer``; keep the best epoch on validation.

    ``cfg``: :data:`TRAIN_DEFAULTS` keys (the fallback's ``training`` overrides apply on top).
    Returns ``history`` (per epoch: ``loss``, the Trainer's mean training loss over the
    epoch's batches, augmented, dropout on; ``val_loss`` and ``val_accuracy`` on the
    validation set; ``accuracy``, measured at the end of each epoch in evaluation mode, without
    augmentation, on a fixed random subset of ``train_eval_images`` training images, not on
    the whole training set), ``best_val_accuracy``, ``best_epoch``, ``train_seconds`` (the
    whole ``train()``, evaluations and checkpoints included), ``train_images_per_second``
    (training images over the training part of the epochs only) and ``settings`` (what was
    used). The weights of the best epoch are loaded back into ``clf.model``; the Trainer's
    output folder (``work_dir``, temporary by default) is deleted.
    """
    from transformers import Trainer

    cfg = {**TRAIN_DEFAULTS, **{k: v for k, v in cfg.items() if k in TRAIN_DEFAULTS},
           **clf.training}
    rng = np.random.default_rng(seed)
    subset = np.sort(rng.choice(len(x_train), min(int(cfg["train_eval_images"]), len(x_train)),
                                replace=False))
    augment = Augment(cfg["flip"], cfg["crop_scale"]) if cfg["flip"] or cfg["crop_scale"] else None
    train_ds = ImageDataset(x_train, y_train, augment)
    evals = {"val": ImageDataset(x_val, y_val),
             "train": ImageDataset(x_train[subset], np.asarray(y_train)[subset])}
    clock, keep = _clock(), _keep_best()
    own_dir = work_dir is None
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="hf-trainer-"))
    try:
        trainer = Trainer(model=clf.model,
                          args=_training_arguments(cfg, work_dir, seed, progress),
                          data_collator=Collator(clf.processor), train_dataset=train_ds,
                          eval_dataset=evals, compute_metrics=_accuracy,
                          callbacks=[clock, keep])
        t0 = time.perf_counter()
        trainer.train()
        if keep.state_dict is not None:
            trainer.model.load_state_dict(keep.state_dict)
        train_seconds = time.perf_counter() - t0
        history = history_from_logs(trainer.state.log_history)
    finally:
        if own_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    clf.model = trainer.model.eval()
    best = int(np.argmax(history["val_accuracy"]))
    return {"history": history, "best_val_accuracy": float(history["val_accuracy"][best]),
            "best_epoch": best + 1, "train_seconds": float(train_seconds),
            "train_images_per_second": float(len(x_train) * len(clock.epoch_seconds)
                                             / max(sum(clock.epoch_seconds), 1e-9)),
            "settings": cfg}


def _batches(model, processor, x, batch_size: int, **kwargs):
    import torch

    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            inputs = processor(images=list(x[i:i + batch_size]), return_tensors="pt")
            yield model(pixel_values=inputs["pixel_values"].to(device), **kwargs)


def predict_probs(model, processor, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities (softmax) for ``uint8`` images (N, H, W, 3)."""
    import torch

    out = [torch.softmax(o.logits.float(), -1).cpu().numpy()
           for o in _batches(model, processor, x, batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels))


# --------------------------------------------------------------------------- attention rollout

def rollout_matrix(attentions) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020): per layer, average the heads, add the
    identity (the residual connection), normalise the rows, then multiply the layers, first
    layer on the right. ``attentions``: one (B, heads, T, T) array per layer. Returns (B, T, T);
    each row sums to 1."""
    rolled = None
    for layer in attentions:
        a = np.asarray(layer, dtype=np.float64).mean(axis=1)
        a = a + np.eye(a.shape[-1])
        a = a / a.sum(axis=-1, keepdims=True)
        rolled = a if rolled is None else a @ rolled
    if rolled is None:
        raise ValueError("attention rollout needs at least one layer")
    return rolled


def attention_rollout(attentions) -> np.ndarray:
    """The CLS row of the rollout over the patches, as (B, g, g) maps scaled to max 1.

    Tokens before the g*g patches (CLS, and DeiT's distillation token) are dropped."""
    rolled = rollout_matrix(attentions)
    tokens = rolled.shape[-1]
    g = math.isqrt(tokens - 1)
    maps = rolled[:, 0, tokens - g * g:].reshape(-1, g, g)
    return maps / np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)


def attention_maps(model, processor, x: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Attention rollout maps (N, g, g), values 0..1, of ``model`` on ``uint8`` images."""
    out = []
    for o in _batches(model, processor, x, batch_size, output_attentions=True):
        if not o.attentions or o.attentions[0] is None:
            raise RuntimeError("the model returned no attentions: load it with "
                               "attn_implementation='eager'")
        out.append(attention_rollout([a.float().cpu().numpy() for a in o.attentions]))
    return np.concatenate(out)


# --------------------------------------------------------------------------- evaluation, saving

def per_class_report(y_true, probs, labels: dict[int, tuple[int, str]]):
    """sklearn's classification report as a table: one row per class (official id and
    name), then the macro and weighted averages."""
    import pandas as pd
    from sklearn.metrics import classification_report

    k = len(labels)
    names = [f"{cid} {name}" for _, (cid, name) in sorted(labels.items())]
    report = classification_report(np.asarray(y_true), np.asarray(probs).argmax(axis=1),
                                   labels=np.arange(k), target_names=names, output_dict=True,
                                   zero_division=0)
    report.pop("accuracy", None)
    table = pd.DataFrame(report).T.rename(columns={"precision": "précision", "recall": "rappel",
                                                   "f1-score": "F1", "support": "images"})
    table["images"] = table["images"].astype(int)
    return table


def save(clf: Classifier, model_dir: Path, labels: dict[int, tuple[int, str]],
         crop_mode: str) -> Path:
    """Write the model (safetensors), its image processor, ``labels.json`` and
    ``preprocess.json`` to ``model_dir`` (replaced), for :mod:`common.predict`."""
    from common.predict import write_model_info

    model_dir = Path(model_dir)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    clf.model.save_pretrained(model_dir, safe_serialization=True)
    clf.processor.save_pretrained(model_dir)
    write_model_info(model_dir, labels, {
        "framework": "transformers", "image_size": input_size(clf.processor),
        "crop_mode": crop_mode, "normalisation": normalisation(clf.processor),
        "weights": clf.weights})
    return model_dir


# --------------------------------------------------------------------------- one run

def fit_config(cfg: dict, table, labels: dict[int, tuple[int, str]], *, checkpoint: str,
               profile: str, fallback: dict | None, model_dir: Path, seed: int = 0,
               val_fraction: float = 0.15, test_fraction: float = 0.15,
               crop_mode: str = "squash", timeout: float = HUB_TIMEOUT,
               progress: bool = False) -> tuple[dict, dict]:
    """One run: splits (``cfg["balance"]``, ``cfg["cap"]``), images at the processor's size,
    fine-tuning, test metrics, saved model folder.

    Returns the results record (the contract of :mod:`common.results`) and the test data:
    ``x``, ``y``, ``probs`` (for the figures), ``table``, ``splits`` and the fine-tuned
    :class:`Classifier` as ``classifier``.
    """
    from common import data, images, results

    unknown = sorted(set(cfg) - set(TRAIN_DEFAULTS) - RUN_KEYS
                     | set((fallback or {}).get("training") or {}) - set(TRAIN_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} in run {cfg.get('name')!r}: use "
                         f"{sorted(RUN_KEYS)} or the training settings {sorted(TRAIN_DEFAULTS)}")
    splits = data.make_splits(table, val_fraction=val_fraction, test_fraction=test_fraction,
                              seed=seed, cap=cfg.get("cap"), balance=bool(cfg.get("balance")))
    splits.check()
    clf = load_classifier(checkpoint, labels, profile=profile, fallback=fallback,
                          timeout=timeout, seed=seed)
    size = input_size(clf.processor)
    loaded = {name: images.load_images(part, size, crop_mode, progress=progress)
              for name, part in (("train", splits.train), ("val", splits.val),
                                 ("test", splits.test))}
    (x_train, t_train), (x_val, t_val), (x_test, t_test) = (loaded[k] for k in
                                                            ("train", "val", "test"))
    fit = fine_tune(clf, x_train, t_train["label"].to_numpy(), x_val, t_val["label"].to_numpy(),
                    cfg, seed=seed, progress=progress)
    y_test = t_test["label"].to_numpy()
    probs = predict_probs(clf.model, clf.processor, x_test,
                          batch_size=int(fit["settings"]["eval_batch_size"]))
    save(clf, model_dir, labels, crop_mode)
    params = {**{k: v for k, v in cfg.items() if k != "name"}, **fit["settings"],
              "checkpoint": str(checkpoint), "image_size": size, "crop_mode": crop_mode,
              "model_parameters": int(sum(p.numel() for p in clf.model.parameters())),
              "split_sizes": {"train": len(x_train), "val": len(x_val), "test": len(x_test)},
              "best_epoch": fit["best_epoch"]}
    record = results.run_record(cfg["name"], params, clf.weights, y_test, probs, fit, model_dir)
    test = {"x": x_test, "y": y_test, "probs": probs, "table": t_test, "splits": splits,
            "classifier": clf}
    return record, test
