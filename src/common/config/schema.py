"""The typed description of every parameter: one model per notebook and per kind of run.

Each key has its type, its default and its allowed range here, and a one-line docstring
(pydantic reads it as the key's description). A parameter file holds only what differs from
these defaults; :mod:`common.config.loading` reads it, applies overrides and validates it.
This module imports no machine-learning library: a notebook reads its parameters (the Keras
backend among them) before Keras is imported.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from common.config.study import NOTEBOOKS, TEN_CLASSES

Fraction = Annotated[float, Field(gt=0, lt=1)]  # strictly between 0 and 1
Rate = Annotated[float, Field(ge=0, lt=1)]  # 0 included
Area = Annotated[float, Field(gt=0, le=1)]  # 1 included
Positive = Annotated[int, Field(ge=1)]
Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]


class Strict(BaseModel):
    """A block of parameters: unknown keys are refused, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True,
                              validate_assignment=True)


# --------------------------------------------------------------------------- the study

class Study(Strict):
    """``params/<profile>/study.yaml``: the data and the split that every notebook shares."""

    data_dir: str | None = None
    """The Stanford Cars folder; null: $CARS_DATA_DIR, else data/stanford_cars."""
    split_seed: int = 42
    """The seed of the one train / validation / test split of the study."""
    val_fraction: Fraction = 0.15
    """Validation images: this fraction of what the test set leaves."""
    test_fraction: Fraction = 0.2
    """Test images, when the data has no official test split: this fraction of each class."""
    ten_classes: Annotated[list[Positive], Field(min_length=2)] = TEN_CLASSES
    """The official ids of the 10-class task (02 and 04)."""
    crop_mode: Literal["squash", "center", "bbox"] = "squash"
    """How every notebook makes its images square: squashed (2022), centre crop, bounding box."""
    crop_margin: Annotated[float, Field(ge=0, le=1)] = 0.1
    """Margin around the bounding box (crop_mode bbox), as a fraction of its size."""
    missing_boxes: Literal["refuse", "whole"] = "refuse"
    """crop_mode bbox on images without a box: refuse the data, or take those images whole."""


# --------------------------------------------------------------------------- runs

class Budget(Strict):
    """How much of the shared training and validation sets a run uses; the test set is
    always whole."""

    cap_per_class: Positive | None = None
    """At most so many training and so many validation images per class; null: all."""


class VitNetwork(Strict):
    """The network of a from-scratch ViT run: the keras.io ViT, or its hybrid form
    (``stem_channels``). :func:`common.models.vit.build_vit` and notebook 01 build it."""

    image_size: Positive
    """Images are resized to this many pixels a side."""
    patch_size: Positive
    """Pixels a side of a patch (of a token, with stem_channels)."""
    drop_remainder: bool = False
    """Allow a patch_size that does not divide image_size: the last pixels are dropped."""
    projection_dim: Positive = 64
    """Width of the tokens."""
    num_heads: Positive = 4
    """Attention heads per block."""
    key_dim: Positive | None = None
    """Width of each head's queries and keys; null: projection_dim (the keras.io model)."""
    transformer_layers: Positive = 8
    """Transformer blocks."""
    mlp_head_units: list[Positive] = [2048, 1024]
    """Widths of the head's hidden layers."""
    dropout: Rate = 0.1
    """Dropout inside the transformer blocks."""
    head_dropout: Rate = 0.5
    """Dropout in the head."""
    stochastic_depth_rate: Rate = 0.0
    """Drop-path rate of the last block (linear from 0 at the first)."""
    stem_channels: Annotated[list[Positive], Field(min_length=1)] | None = None
    """A hybrid ViT: stride-2 convolutions with these channels instead of patches."""

    SHAPE_KEYS: ClassVar[tuple[str, ...]] = (
        "patch_size", "projection_dim", "num_heads", "key_dim", "transformer_layers",
        "mlp_head_units", "stem_channels")
    """The keys that shape the network's weights (a run that starts from another run's
    network must give them as that run does)."""

    @property
    def head_dim(self) -> int:
        """Width of each head's queries and keys: key_dim, else projection_dim."""
        return self.key_dim or self.projection_dim

    def drop_path_rate(self, block: int) -> float:
        """Block ``block``'s drop-path rate: linear from 0 at the first block to
        stochastic_depth_rate at the last."""
        return self.stochastic_depth_rate * block / max(self.transformer_layers - 1, 1)

    @model_validator(mode="after")
    def _shapes(self):
        if self.stem_channels and 2 ** len(self.stem_channels) != self.patch_size:
            raise ValueError(
                f"stem_channels {self.stem_channels} make tokens of "
                f"{2 ** len(self.stem_channels)} px: patch_size must be "
                f"2 ** len(stem_channels) = {2 ** len(self.stem_channels)}")
        if self.patch_size > self.image_size:
            raise ValueError(f"patch_size {self.patch_size} is larger than image_size "
                             f"{self.image_size}")
        if self.image_size % self.patch_size and (self.stem_channels or not self.drop_remainder):
            raise ValueError(
                f"patch_size {self.patch_size} does not divide image_size {self.image_size}: "
                "use a divisor"
                + ("" if self.stem_channels else
                   ", or set drop_remainder: true to drop the last pixels"))
        return self


class VitOptimiser(Strict):
    """How a from-scratch ViT run descends: AdamW, its learning-rate schedule, a moving
    average of the weights, and the loss's label smoothing
    (:func:`common.training.keras_fit.make_optimizer`)."""

    learning_rate: Annotated[float, Field(gt=0)] = 1e-3
    """AdamW's peak learning rate."""
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    """AdamW's weight decay."""
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    """The learning rate after the warmup: constant, cosine or linear decay to 0."""
    warmup_epochs: Annotated[int, Field(ge=0)] = 0
    """Epochs of linear warmup (with schedule cosine or linear)."""
    ema_momentum: Annotated[float, Field(gt=0, lt=1)] | None = None
    """Validate, keep and test an average of the weights with this momentum a step (use_ema)."""
    label_smoothing: Rate = 0.0
    """Label smoothing of the cross-entropy."""


class VitAugmentation(Strict):
    """What a from-scratch ViT run does to its training images: random transformations
    (per image) and mixing (per batch)."""

    level: Literal["none", "standard", "strong", "heavy"] = "standard"
    """Flips, rotations, zooms; strong: + translation, contrast; heavy: more, + colour, erasing."""
    in_model: bool = False
    """Augment inside the model (on the accelerator) instead of in the input pipeline."""
    mixup_alpha: Annotated[float, Field(ge=0)] = 0.0
    """Mixup: blend each training image and its label with another's, weight ~ Beta(a, a)."""
    cutmix_alpha: Annotated[float, Field(ge=0)] = 0.0
    """CutMix: paste a box of another image, area ~ Beta(a, a); with mixup, one per batch."""

    @property
    def model_level(self) -> str:
        """The level of the augmentation layers inside the model ("none" unless in_model)."""
        return self.level if self.in_model else "none"

    @property
    def pipeline_level(self) -> str:
        """The level applied to the batches before the model ("none" with in_model)."""
        return "none" if self.in_model else self.level

    @property
    def mixes(self) -> bool:
        """Whether the training batches are mixed (mixup or CutMix): soft labels."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0


class KerasVitRun(Budget):
    """One from-scratch ViT of notebooks 01 and 02 (the keras.io model, Keras 3): its
    network, optimiser and augmentation in groups, the loop's keys at the top."""

    name: Name
    """The run's name (its model folder and its row in the tables)."""
    network: VitNetwork
    """The network (image and patch sizes, widths, depth, head, dropouts, stem)."""
    optimiser: VitOptimiser = VitOptimiser()
    """AdamW, its schedule and the label smoothing."""
    augmentation: VitAugmentation = VitAugmentation()
    """The training images' augmentation and mixing."""
    epochs: Positive = 100
    """Training epochs."""
    batch_size: Positive = 256
    """Images per training step."""
    select_from_epoch: Positive = 1
    """The best validation epoch is chosen from this epoch on."""
    jit_compile: bool | Literal["auto"] = "auto"
    """XLA (torch.compile on torch); auto: Keras' rule."""
    init_from: Name | None = None
    """Start from the network of this run of notebook 01 (a new output layer)."""
    head_from_init: bool = False
    """With init_from: the new output layer starts from that network's for the same classes."""
    test_time_flip: bool = False
    """Average test probabilities over each image and its mirror image."""

    @model_validator(mode="after")
    def _loop(self):
        if self.select_from_epoch > self.epochs:
            raise ValueError(f"select_from_epoch {self.select_from_epoch} is after the last "
                             f"epoch ({self.epochs})")
        if self.head_from_init and not self.init_from:
            raise ValueError("head_from_init needs init_from: the run whose output layer "
                             "it starts from")
        return self


class HfTraining(Strict):
    """The Hugging Face ``Trainer`` settings of a fine-tuning (notebooks 03 and 04)."""

    epochs: Positive = 3
    """Training epochs."""
    batch_size: Positive = 32
    """Images per training step, all processes together (each takes an equal share)."""
    eval_batch_size: Positive = 64
    """Images per evaluation step."""
    learning_rate: Annotated[float, Field(gt=0)] = 2e-5
    """Peak learning rate (AdamW)."""
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    """AdamW's weight decay."""
    warmup_ratio: Rate = 0.1
    """Fraction of the steps spent warming the learning rate up."""
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    """The learning-rate schedule after the warmup."""
    label_smoothing: Rate = 0.0
    """Label smoothing of the cross-entropy."""
    flip: bool = True
    """Random horizontal flip."""
    crop_scale: tuple[Area, Area] | None = (0.8, 1.0)
    """Random resized crop: the range of the area kept; null: no crop."""
    train_eval_images: Positive = 512
    """Training images measured each epoch (the training accuracy of the curves)."""
    mixed_precision: bool = False
    """bf16 (fp16 on a GPU without bf16), on a GPU only."""
    dataloader_workers: Annotated[int, Field(ge=0)] = 0
    """Data-loading worker processes."""
    attention: Literal["eager", "sdpa"] = "eager"
    """The model's attention while training: eager or PyTorch's fused sdpa."""
    tf32: bool = False
    """TF32 matmuls on a GPU that has them."""
    torch_compile: bool = False
    """torch.compile the model (the Trainer's torch_compile)."""

    @field_validator("crop_scale")
    @classmethod
    def _ordered(cls, value):
        if value is not None and value[0] > value[1]:
            raise ValueError(f"crop_scale must be [low, high] with low <= high, got {value}")
        return value


def _changes(model: type[BaseModel], name: str) -> type[BaseModel]:
    """A model with every key of ``model``, each optional: the keys given replace those of
    a full ``model`` (same types and ranges)."""
    fields = {}
    for key, info in model.model_fields.items():
        typ = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[key] = (typ | None, Field(None, description=info.description))
    return create_model(name, __base__=Strict, __doc__=f"Some keys of {model.__name__}.",
                        **fields)


HfTrainingChanges = _changes(HfTraining, "HfTrainingChanges")


class HfRun(HfTraining, Budget):
    """One fine-tuning run of notebooks 03 and 04."""

    name: Name
    """The run's name (its model folder and its row in the tables)."""
    balance: bool = False
    """Cut every class to the smallest class, in training and in validation."""


class HfFallback(Strict):
    """What the cpu and smoke profiles fine-tune when the pretrained weights are missing."""

    config: dict = {}
    """A small random ViT: transformers' ViTConfig keys (image_size, hidden_size...)."""
    training: HfTrainingChanges = HfTrainingChanges()
    """Training settings that replace the runs' for this model (keys of a run's settings)."""


class Stage(Strict):
    """One training stage of EfficientNetB0."""

    epochs: Positive
    """Training epochs."""
    learning_rate: Annotated[float, Field(gt=0)]
    """Adam's learning rate."""


class UnfrozenStage(Stage):
    """The second stage: the top of the backbone unfrozen."""

    layers: Positive = 20
    """How many of the backbone's last layers become trainable (batch norm excepted)."""


class EfficientNetRun(Budget):
    """EfficientNetB0 transfer learning (notebook 05): a frozen stage, then an unfrozen one."""

    image_size: Positive = 224
    """Images are resized to this many pixels a side."""
    weights: str = "imagenet"
    """imagenet, or the path of a weights file."""
    batch_size: Positive = 32
    """Images per training step."""
    augment_in_model: bool = True
    """The 2022 augmentation inside the model; false: in the input pipeline (lets it compile)."""
    jit_compile: bool | Literal["auto"] = "auto"
    """XLA (torch.compile on torch); auto: Keras' rule."""
    frozen: Stage = Stage(epochs=25, learning_rate=1e-2)
    """The first stage: the ImageNet backbone frozen, as in 2022."""
    unfrozen: UnfrozenStage = UnfrozenStage(epochs=10, learning_rate=1e-5)
    """The second stage: the top of the backbone unfrozen."""


# --------------------------------------------------------------------------- notebooks

class Notebook(Strict):
    """What every notebook takes."""

    seed: int = 42
    """The training seed (weights, batches, augmentation)."""
    # set by the loader, never in a parameter file
    profile: str = ""
    """The profile (set by the loader)."""
    dry_run: bool = False
    """The profile's models and settings with tiny amounts (set by the loader)."""
    file: str = ""
    """The parameter file (set by the loader)."""
    study: Study = Study()
    """The shared data and split (params/<profile>/study.yaml, set by the loader)."""

    @property
    def outputs(self) -> str:
        """The folder name of the outputs under results/, models/ and runs/."""
        return f"{self.profile}-dry" if self.dry_run else self.profile


LOADER_KEYS = ("profile", "dry_run", "file", "study")


class KerasSwitches(Strict):
    """The process switches of a Keras notebook."""

    keras_backend: Literal["tensorflow", "torch"] = "tensorflow"
    """The Keras backend of this notebook's kernel."""
    torch_threads: Positive | None = None
    """torch's intra-op threads; null: one per core."""
    mixed_precision: bool = False
    """Keras' mixed_bfloat16 policy."""

    @property
    def framework(self) -> str:
        """The framework that trains: the Keras backend."""
        return self.keras_backend


class KerasVitNotebook(Notebook, KerasSwitches):
    """Notebook 01: from-scratch ViTs on the 196 classes."""

    runs: Annotated[list[KerasVitRun], Field(min_length=1)]
    """The configurations, trained one after the other."""

    @field_validator("runs")
    @classmethod
    def _unique(cls, runs):
        names = [r.name for r in runs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two runs are named {twice[0]!r}")
        return runs


class KerasVitTenNotebook(KerasVitNotebook):
    """Notebook 02: from-scratch ViTs on the 10 classes."""

    target_accuracy: Fraction | None = None
    """The test accuracy the best run aims at (the verdict reads the interval)."""


class HfNotebook(Notebook):
    """Notebooks 03 and 04: fine-tuning a pretrained ViT with Hugging Face."""

    checkpoint: str = "google/vit-base-patch16-224-in21k"
    """The pretrained checkpoint (hub id or folder)."""
    hub_timeout: Annotated[float, Field(gt=0)] = 10
    """Seconds to wait for the hub."""
    torch_threads: Positive | None = None
    """torch's intra-op threads; null: one per core."""
    processes: Positive | None = None
    """Data-parallel training processes; null: one per visible GPU."""
    fallback: HfFallback | None = None
    """The small random ViT used when the weights are missing (cpu, smoke); null: none."""
    runs: Annotated[list[HfRun], Field(min_length=1)]
    """The fine-tuning runs."""
    n_predictions: Positive = 25
    """Test photos shown with their predicted class."""
    n_attention: Positive = 8
    """Test photos shown with their attention map."""

    @property
    def framework(self) -> str:
        """The framework that trains: torch (the Hugging Face Trainer)."""
        return "torch"

    _unique = field_validator("runs")(KerasVitNotebook._unique.__func__)


class EfficientNetNotebook(Notebook, KerasSwitches, EfficientNetRun):
    """Notebook 05: EfficientNetB0 transfer learning."""


SCHEMAS: dict[str, type[Notebook]] = {name: globals()[entry.schema]
                                       for name, entry in NOTEBOOKS.items()}
"""Notebook -> the schema of its params file, as the table of notebooks names it."""
