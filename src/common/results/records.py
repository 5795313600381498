"""The typed records of a results file (``results/<profile>/<notebook>.json``): pydantic
models whose validation is the contract's (:mod:`common.results.contract`), with the few
checks across fields (a history's equal lengths, an interval's order, every run scored on the
task's test set). Every field is typed and an unknown field is refused, so a malformed file
is refused in one line that names the field; notebooks and the report read attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, model_validator

from common.results.provenance import Machine

HISTORY = ("loss", "val_loss", "accuracy", "val_accuracy")

# JSON numbers only (a boolean or a string is refused), finite
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Fraction = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0.0)]
Count = Annotated[int, Field(strict=True, ge=0)]
Text = Annotated[str, Field(strict=True, min_length=1)]


def _relative_path(value: str) -> str:
    if Path(value).is_absolute():
        raise ValueError("must be relative to the output folder")
    return value


RelativePath = Annotated[str, Field(strict=True), AfterValidator(_relative_path)]


class Record(BaseModel):
    """A block of a results file: every field typed, an unknown field refused."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Weights(BaseModel):
    """Where a run's weights came from (:func:`common.models.origin.weights_info`); the
    details beside these three fields (``from``, ``classes``, ``head``…) vary by notebook."""

    model_config = ConfigDict(extra="allow")
    source: Text  # the checkpoint, "random-init" or "pretrained-here"
    pretrained: StrictBool
    reason: str | None = None


class Metrics(Record):
    test_accuracy: Fraction
    test_top5_accuracy: Fraction
    test_macro_f1: Fraction
    best_val_accuracy: Fraction
    test_images: Annotated[int, Field(strict=True, gt=0)] | None = None
    test_accuracy_ci95: tuple[Fraction, Fraction] | None = None

    @model_validator(mode="after")
    def _interval(self):
        if self.test_accuracy_ci95 and self.test_accuracy_ci95[0] > self.test_accuracy_ci95[1]:
            raise ValueError("test_accuracy_ci95 must be [low, high] with low <= high")
        return self


class History(Record):
    """Per-epoch values; top-5 accuracies when the trainer logs them."""

    loss: list[Number]
    val_loss: list[Number]
    accuracy: list[Number]
    val_accuracy: list[Number]
    top5_accuracy: list[Number] | None = None
    val_top5_accuracy: list[Number] | None = None

    @model_validator(mode="after")
    def _same_lengths(self):
        lengths = {k: len(getattr(self, k)) for k in HISTORY}
        if min(lengths.values()) == 0 or len(set(lengths.values())) != 1:
            raise ValueError(f"needs equal non-empty {', '.join(HISTORY)}: {lengths}")
        return self


class CheckpointRule(Record):
    metric: Text
    from_epoch: Annotated[int, Field(strict=True, ge=1)]


class Run(Record):
    """One run of a notebook: its settings, weights, test metrics and training numbers.
    ``predictions`` (its per-image test predictions, :mod:`common.results.predictions`) go
    to the predictions file, never into the results file."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True,
                              protected_namespaces=())
    name: Text
    params: dict
    weights: Weights
    metrics: Metrics
    history: History
    best_epoch: Annotated[int, Field(strict=True, ge=1)] | None = None
    checkpoint_rule: CheckpointRule | None = None
    train_seconds: NonNegative
    train_images_per_second: NonNegative
    epoch_seconds: list[NonNegative] = []
    trained_on: dict[str, str] = {}
    model_dir: Text  # relative to the output folder once written (WrittenRun)
    predictions: pd.DataFrame | None = Field(default=None, exclude=True, repr=False)


class WrittenRun(Run):
    """A run as a results file holds it: its model folder relative to the output folder
    (a copied output folder then finds its own)."""

    model_dir: RelativePath


class TestSet(Record):
    images: Annotated[int, Field(strict=True, gt=0)]
    fingerprint: Text
    crop: str | None = None


class SplitSizes(Record):
    train: Count
    val: Count
    test: Count


class Split(Record):
    """The study's one split: its seed and fractions, the fingerprints of the data and of
    the split (a network trained here is recognised by them), and whether the notebook
    checked that no image is in two sets."""

    seed: int
    val_fraction: Fraction
    test_fraction: Fraction | None = None  # None: the official test split
    fingerprints: dict[str, str] | None = None
    disjoint: StrictBool | None = None


class Crop(Record):
    """How every image was made square: ``mode`` (squash, center, bbox), the box's margin,
    and how many of the task's images had a box."""

    mode: Literal["squash", "center", "bbox"]
    margin: Fraction | None = None
    images_with_box: Count
    images: Count


class Dataset(Record):
    """What a notebook trained and was tested on (:meth:`common.data.task.Task.record`)."""

    root: str | None
    layout: str | None
    synthetic: StrictBool
    task: Text
    n_classes: Annotated[int, Field(strict=True, gt=0)]
    class_ids: list[int]
    official_test: StrictBool
    split_sizes: SplitSizes
    test_set: TestSet
    n_images: Count | None = None
    images_per_class: list[Count] | None = None
    split: Split
    crop: Crop | None = None


class Mismatch(Record):
    package: Text
    locked: Text
    installed: str | None  # None: not installed


class Lock(Record):
    """The lock of exact versions nearest to the environment
    (:func:`common.results.lockfile.lock_info`)."""

    file: Text
    sha256: Text
    packages: Count
    mismatches: list[Mismatch]


class Environment(Machine):
    """Versions, the lock, the Keras backend, the device (:func:`provenance.environment`),
    and the device each framework trained on."""

    model_config = ConfigDict(extra="forbid")
    python: Text
    keras: str | None
    tensorflow: str | None
    torch: str | None
    transformers: str | None
    device: Text
    lock: Lock | None = None
    keras_backend: str | None = None
    trained_on: dict[str, str] = {}


class PredictionsFile(Record):
    file: RelativePath
    sha256: Text


class Results(Record):
    """A notebook's results file, ``results/<profile>/<notebook>.json``."""

    notebook: Text
    profile: Text
    dry_run: StrictBool
    created: str
    duration_s: NonNegative
    git_commit: str | None
    environment: Environment
    params: dict
    dataset: Dataset
    runs: Annotated[list[WrittenRun], Field(min_length=1)]
    figures: list[RelativePath]
    predictions: PredictionsFile

    @model_validator(mode="after")
    def _one_test_set(self):
        for i, run in enumerate(self.runs):
            images = run.metrics.test_images
            if images is not None and images != self.dataset.test_set.images:
                raise ValueError(f"runs[{i}] ({run.name}) was scored on {images} test images, "
                                 f"not on the task's {self.dataset.test_set.images}")
        return self
