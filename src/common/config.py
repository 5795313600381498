"""The study's configuration: the notebooks, their parameter files, the 2022 reference numbers.

:func:`load` reads ``params/<profile>/<notebook>.yaml``, applies overrides (papermill's
``overrides`` parameter, ``make ... PARAMS=``), checks every key, at the top level and inside
each run, against what the notebook and its model family accept, and merges each run with
the file's ``defaults``. A misspelt or unknown key stops the notebook before any training
starts, with an error naming the key, the file and the accepted keys.

This module imports no machine-learning library: a notebook reads its parameters (the Keras
backend among them) before Keras is imported.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import yaml

from common import paths

PROFILES = ("smoke", "cpu", "gpu")

# notebook -> its title in the report (French)
NOTEBOOKS = {
    "01_vit_scratch": "ViT from scratch, 196 classes",
    "02_vit_scratch_10classes": "ViT from scratch, 10 classes",
    "03_vit_finetune": "ViT fine-tuné, 196 classes",
    "04_vit_finetune_10classes": "ViT fine-tuné, 10 classes",
    "05_efficientnet": "EfficientNetB0",
}

# Numbers reported by the 2022 study (its report and notebooks), shown beside ours and
# labelled as such. They are the only numbers typed by hand in this project, and only
# because they are quotations. `split` says what the 2022 number measured; `ours`, the runs
# of this study that replay it, when their names differ.
_LABEL_BUG = "artefact : étiquettes de test restées en 1..196"
REFERENCE_2022 = {
    "01_vit_scratch": [
        {"run": "32px-patch6", "value": 0.01, "split": "test", "note": _LABEL_BUG},
        {"run": "72px-patch6", "value": 0.01, "split": "test", "note": _LABEL_BUG},
        {"run": "72px-patch6-16layers", "value": 0.01, "split": "test", "note": _LABEL_BUG},
    ],
    "02_vit_scratch_10classes": [
        {"run": "72px-patch6", "value": 0.21, "split": "test"},
        {"run": "72px-patch8", "value": 0.245, "split": "test"},
        {"run": "144px-patch16", "value": 0.209, "split": "test"},
    ],
    "03_vit_finetune": [
        {"run": "balanced", "value": 0.70, "split": "validation",
         "ours": ["balanced", "balanced-4"]},
        {"run": "cap64", "value": 0.76, "split": "validation", "ours": ["cap64", "cap-6"]},
    ],
    "04_vit_finetune_10classes": [
        {"run": "balanced", "value": 0.91, "split": "validation",
         "note": "8 photos inédites sur 10 bien classées"},
    ],
    "05_efficientnet": [
        {"run": "frozen", "value": 0.32, "split": "validation",
         "ours": ["efficientnetb0-gele"]},
    ],
}

# Hugging Face fine-tuning: every training setting and its default (common.hf_training).
HF_TRAINING_DEFAULTS = {
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
    "attention": "eager",  # the model's attention while training: "eager" or "sdpa"
    "tf32": False,  # TF32 matmuls on a GPU that has them
    "torch_compile": False,  # torch.compile the model (the Trainer's torch_compile)
}

REQUIRED = object()  # a top-level key the parameter file must give

# The keys of one run, per model family ("required" ones must be there after the merge).
RUN_KEYS = {
    "keras_vit": {
        "required": {"name", "image_size", "patch_size", "epochs", "batch_size"},
        "optional": {"projection_dim", "num_heads", "transformer_layers", "mlp_head_units",
                     "dropout", "head_dropout", "stochastic_depth_rate", "stem_channels",
                     "learning_rate", "weight_decay", "warmup_epochs", "schedule",
                     "augmentation", "augment_in_model", "crop_mode", "crop_margin",
                     "label_smoothing", "select_from_epoch", "jit_compile", "init_from",
                     "cap", "test_time_flip"},
    },
    "hf": {"required": {"name"}, "optional": {"balance", "cap", *HF_TRAINING_DEFAULTS}},
}

_DATA = {"profile": REQUIRED, "data_dir": None, "class_ids": None, "seed": REQUIRED,
         "val_fraction": REQUIRED, "test_fraction": REQUIRED}
_KERAS_VIT = {**_DATA, "cap": None, "mixed_precision": False, "keras_backend": "tensorflow",
              "torch_threads": None, "defaults": {}, "runs": REQUIRED}
_HF = {**_DATA, "crop_mode": "squash", "checkpoint": REQUIRED, "hub_timeout": 10,
       "torch_threads": None, "processes": None, "fallback": {}, "defaults": {}, "runs": REQUIRED,
       "n_predictions": REQUIRED, "n_attention": REQUIRED}
# notebook -> (model family of its runs, top-level key -> default)
SCHEMAS = {
    "01_vit_scratch": ("keras_vit", _KERAS_VIT),
    "02_vit_scratch_10classes": ("keras_vit", {**_KERAS_VIT, "target_accuracy": None}),
    "03_vit_finetune": ("hf", _HF),
    "04_vit_finetune_10classes": ("hf", _HF),
    "05_efficientnet": ("efficientnet", {
        **_DATA, "cap": None, "image_size": REQUIRED, "weights": "imagenet",
        "keras_backend": "tensorflow", "torch_threads": None,
        "batch_size": REQUIRED, "mixed_precision": False, "frozen": REQUIRED,
        "unfrozen": REQUIRED}),
}
# sub-entries checked key by key: (family, key) -> accepted keys
_NESTED = {
    ("hf", "fallback"): {"config", "training"},
    ("efficientnet", "frozen"): {"epochs", "learning_rate"},
    ("efficientnet", "unfrozen"): {"epochs", "learning_rate", "layers"},
}


class ConfigError(ValueError):
    """A parameter file or override that cannot be used; the message names the key and
    the file."""


def _unknown(keys, accepted, where: str, file: Path) -> None:
    bad = sorted(set(keys) - set(accepted))
    if bad:
        raise ConfigError(
            f"{file}: unknown key{'s' if len(bad) > 1 else ''} "
            f"{', '.join(repr(k) for k in bad)} {where}; accepted keys: "
            f"{', '.join(sorted(accepted))}")


def _check_runs(family: str, defaults: dict, runs, file: Path) -> list[dict]:
    keys = RUN_KEYS[family]
    accepted = keys["required"] | keys["optional"]
    _unknown(defaults, accepted - {"name"}, "in `defaults`", file)
    if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) for r in runs):
        raise ConfigError(f"{file}: `runs` must be a non-empty list of configurations")
    merged, names = [], set()
    for i, run in enumerate(runs):
        where = f"in run {run.get('name', i)!r}"
        _unknown(run, accepted, where, file)
        cfg = {**copy.deepcopy(defaults), **copy.deepcopy(run)}
        missing = sorted(keys["required"] - set(cfg))
        if missing:
            raise ConfigError(f"{file}: run {run.get('name', i)!r} lacks {', '.join(missing)} "
                              "(give it in the run or in `defaults`)")
        if cfg["name"] in names:
            raise ConfigError(f"{file}: two runs are named {cfg['name']!r}")
        names.add(cfg["name"])
        merged.append(cfg)
    return merged


SPLIT_KEYS = ("seed", "val_fraction", "test_fraction")


def _check_shared_split(notebook: str, profile: str, params: dict, overrides: dict,
                        file: Path) -> None:
    """A run of 02 that starts from 01's network (``init_from``) needs 01's split: the same
    fractions and seed, and a run of that name in 01."""
    wanted = [r for r in params.get("runs", []) if r.get("init_from")]
    if not wanted or notebook != "02_vit_scratch_10classes":
        return
    first = load("01_vit_scratch", profile,
                 **{k: v for k, v in overrides.items() if k in SPLIT_KEYS})
    for key in SPLIT_KEYS:
        if params[key] != getattr(first, key):
            raise ConfigError(
                f"{file}: {key} is {params[key]} but {first.file} says {getattr(first, key)}; "
                "a run with init_from starts from 01's network and needs its split: give both "
                "notebooks the same seed and fractions")
    names = [r["name"] for r in first.runs]
    for run in wanted:
        if run["init_from"] not in names:
            raise ConfigError(f"{file}: run {run['name']!r} has init_from "
                              f"{run['init_from']!r}, not a run of {first.file} "
                              f"({', '.join(names)})")


def load(notebook: str, profile: str, dry_run: bool = False, **overrides) -> SimpleNamespace:
    """The parameters of ``notebook`` for ``profile``, checked, with ``overrides`` on top
    (a ``None`` override keeps the file's value). ``runs`` are merged with ``defaults``.
    ``dry_run``: the same models, sizes and options, with only the amounts shrunk
    (:func:`shrink`).

    Returns a namespace of every top-level key (``p.seed``, ``p.runs``...) plus ``file``,
    ``dry_run``, ``outputs`` (the folder name under results/, models/ and runs/: the
    profile, or ``<profile>-dry``) and ``limits`` (the most images per split, or None).
    Raises :class:`ConfigError` naming the key and the file.
    """
    notebook = Path(notebook).stem
    if notebook not in SCHEMAS:
        raise ConfigError(f"unknown notebook {notebook!r}; the notebooks are "
                          f"{', '.join(SCHEMAS)}")
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    family, schema = SCHEMAS[notebook]
    file = paths.params_file(profile, notebook)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"no parameter file {file} for profile {profile!r}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{file} must be a mapping of parameter names to values")
    _unknown(raw, schema, "at the top level", file)
    _unknown(overrides, schema, "in the overrides", file)
    values = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
    values["profile"] = profile
    missing = sorted(k for k, v in schema.items() if v is REQUIRED and k not in values)
    if missing:
        raise ConfigError(f"{file} lacks {', '.join(missing)}")
    params = {k: copy.deepcopy(values.get(k, default)) for k, default in schema.items()}
    for (fam, key), accepted in _NESTED.items():
        if fam == family and params.get(key):
            if not isinstance(params[key], dict):
                raise ConfigError(f"{file}: `{key}` must be a mapping")
            _unknown(params[key], accepted, f"in `{key}`", file)
    if family == "hf" and params["fallback"].get("training"):
        _unknown(params["fallback"]["training"], HF_TRAINING_DEFAULTS,
                 "in `fallback.training`", file)
    if family in RUN_KEYS:
        params["runs"] = _check_runs(family, params["defaults"] or {}, params["runs"], file)
    _check_shared_split(notebook, profile, params, overrides, file)
    if dry_run:
        shrink(family, params)
    return SimpleNamespace(**params, file=file, dry_run=bool(dry_run),
                           outputs=f"{profile}-dry" if dry_run else profile,
                           limits=dict(DRY_RUN_LIMITS) if dry_run else None)


# A dry run keeps every setting but the amounts: batches of at most 4 images, 1 epoch per
# stage, 2 steps per epoch (8 training images), at most 16 evaluation images per split.
DRY_RUN_BATCH = 4
DRY_RUN_LIMITS = {"train": 2 * DRY_RUN_BATCH, "evaluation": 16}


def shrink(family: str, params: dict) -> None:
    """The amounts of a dry run, in place (see :data:`DRY_RUN_LIMITS`)."""
    def small(d: dict, *keys):
        for k in keys:
            if k in d:
                d[k] = min(int(d[k]), DRY_RUN_BATCH)

    for run in params.get("runs", []):
        small(run, "batch_size", "eval_batch_size")
        run["epochs"] = 1
        for k in ("select_from_epoch", "warmup_epochs"):
            run.pop(k, None)
        if "train_eval_images" in run:
            run["train_eval_images"] = min(int(run["train_eval_images"]),
                                           DRY_RUN_LIMITS["evaluation"])
    if family == "hf" and (params.get("fallback") or {}).get("training"):
        params["fallback"]["training"]["epochs"] = 1
    if family == "efficientnet":
        small(params, "batch_size")
        params["frozen"]["epochs"] = params["unfrozen"]["epochs"] = 1


def as_record(params: SimpleNamespace) -> dict:
    """Every parameter actually used, as the results file records them."""
    out = {k: v for k, v in vars(params).items()
           if k not in ("file", "defaults", "outputs", "limits")}
    out["file"] = str(Path(params.file).relative_to(paths.ROOT)) \
        if Path(params.file).is_relative_to(paths.ROOT) else str(params.file)
    return out
