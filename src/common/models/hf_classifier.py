"""Hugging Face weights: find the pretrained checkpoint, load it with a new head, or fall
back, visibly, to a small randomly initialised ViT.

:func:`load_classifier` loads the pretrained checkpoint (a hub id or a local folder written
by ``save_pretrained``) with a new classification head; loading never runs remote code
(``trust_remote_code=False``) and never unpickles (``use_safetensors=True``). When the
weights cannot be had, the ``gpu`` profile stops with :class:`PretrainedUnavailable` (what
failed and how to fix it); the ``smoke`` and ``cpu`` profiles fall back to a small randomly
initialised ViT and say so in ``Classifier.weights`` (see
:func:`common.models.origin.weights_info`).
An unreachable hub is detected in well under a second by one short request
(:func:`locate`), not by ``from_pretrained``'s retries.
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from common.models import weight_files
from common.models.origin import weights_info

FALLBACK_PROFILES = ("smoke", "cpu")  # the gpu profile never trains from scratch silently
HUB_TIMEOUT = 10.0


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


def locate(checkpoint: str, timeout: float = HUB_TIMEOUT) -> tuple[str, bool, str | None]:
    """Where to load ``checkpoint`` from, decided fast.

    Returns ``(source, local_files_only, hub_problem)``: a local folder is used as it is; a
    hub id is taken from ``weights/`` when ``make weights`` put it there
    (:func:`common.models.weight_files.hf_folder`), else checked on the hub with one request
    of at most ``timeout`` seconds. When the hub cannot be
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
    downloaded = weight_files.hf_folder(checkpoint)
    if downloaded is not None:
        return str(downloaded), True, None
    return _locate_on_hub(checkpoint, timeout)


@functools.lru_cache(maxsize=32)
def _locate_on_hub(checkpoint: str, timeout: float) -> tuple[str, bool, str | None]:
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
    weights: dict  # provenance, see common.models.origin.weights_info
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
                    fallback=None, timeout: float = HUB_TIMEOUT,
                    seed: int = 0, stand_in: bool = False) -> Classifier:
    """The model to fine-tune: the pretrained ``checkpoint`` or, for the smoke and cpu
    profiles only, the fallback ViT of ``fallback.config`` (``ViTConfig`` keywords;
    ``fallback.training``: training settings that replace the runs'), a
    :class:`common.config.schema.HfFallback`. With
    ``stand_in`` (a dry run), weights that cannot be had are replaced by a random stand-in
    of the same architecture and format (:func:`make_stand_in`), loaded the same way.

    Raises :class:`PretrainedUnavailable` (what failed, how to fix it) when the weights cannot
    be loaded and the profile may not fall back (gpu) or no fallback is given.
    """
    from transformers import set_seed

    set_seed(seed)  # the new classification head (or the whole fallback model) is random
    try:
        model, processor = load_pretrained(checkpoint, labels, timeout)
        return Classifier(model, processor, checkpoint=str(checkpoint),
                          weights=weights_info(str(checkpoint), pretrained=True))
    except PretrainedUnavailable as exc:
        if stand_in:
            folder = make_stand_in(str(checkpoint))
            model, processor = load_pretrained(str(folder), labels, timeout)
            return Classifier(model, processor, checkpoint=str(checkpoint), reason=exc.reason,
                              weights=weights_info(
                                  "stand-in", pretrained=False, requested=str(checkpoint),
                                  file=str(folder), reason=f"dry run: {exc.reason}"))
        if profile not in FALLBACK_PROFILES or not fallback:
            raise PretrainedUnavailable(refusal(str(checkpoint), exc.reason, profile),
                                        exc.reason) from exc
        model, processor = random_init(dict(fallback.config), labels)
        return Classifier(model, processor, checkpoint=str(checkpoint), reason=exc.reason,
                          weights=weights_info(
                              "random-init", pretrained=False, requested=str(checkpoint),
                              reason=f"pretrained unavailable: {exc.reason}"),
                          training=fallback.training.model_dump(exclude_none=True))


def weights_status(checkpoint: str, *, profile: str, fallback=None,
                   timeout: float = HUB_TIMEOUT, stand_in: bool = False,
                   labels: dict[int, tuple[int, str]] | None = None) -> dict:
    """Check, before any work, that the weights can be had (loads them once).

    Returns ``{"pretrained": bool, "weights": dict, "reason": str | None, "parameters": int,
    "model": the loaded model}``, with a head for ``labels`` (two dummy classes by default);
    raises :class:`PretrainedUnavailable` like :func:`load_classifier`.
    """
    clf = load_classifier(checkpoint, labels or {0: (1, "a"), 1: (2, "b")}, profile=profile,
                          fallback=fallback, timeout=timeout, stand_in=stand_in)
    return {"pretrained": clf.pretrained, "weights": clf.weights, "reason": clf.reason,
            "parameters": int(sum(p.numel() for p in clf.model.parameters())),
            "model": clf.model}


def make_stand_in(checkpoint: str) -> Path:
    """A ``save_pretrained`` folder of random weights standing in for ``checkpoint`` in a
    dry run: a ViT-Base/16 at 224 px (``ViTConfig``'s defaults, the architecture of the
    study's checkpoint) and its image processor (224 px, mean = std = 0.5). Made once in
    ``weights/stand-ins/``, then reused."""
    from transformers import ViTConfig, ViTForImageClassification

    folder = weight_files.stand_in_path(checkpoint)
    if not (folder / "model.safetensors").is_file():
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        ViTForImageClassification(ViTConfig()).save_pretrained(tmp, safe_serialization=True)
        simple_processor(224).save_pretrained(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return folder


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
