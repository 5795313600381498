"""The study itself: its profiles, the one table of its notebooks (:data:`NOTEBOOKS`), and the
numbers of the 2022 report it replays.

A task is a set of classes with one train / validation / test split, shared by every
notebook of that task (:mod:`common.data.task`): the 196 classes (01, 03, 05) and the 10
classes of the 2022 report (02, 04), whose split is the 196 classes' split cut down to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PROFILES = ("smoke", "cpu", "gpu")

@dataclass(frozen=True)
class NotebookEntry:
    """What defines one notebook of the study; everything else reads it from
    :data:`NOTEBOOKS`. ``model``: its model, as the report names it (French; the report adds
    the number of classes its results record); ``task``: "all" (every class of the dataset)
    or "ten" (the study file's ``ten_classes``); ``kind``: its kind of run, "scratch" (a
    Keras ViT trained from random weights), "finetune" (a pretrained Hugging Face ViT) or
    "transfer" (a pretrained Keras EfficientNet); ``schema``: the class of
    :mod:`common.config.schema` its params file follows; ``starts_from``: the notebook
    whose trained networks its runs may start from (``init_from``)."""

    model: str
    task: Literal["all", "ten"]
    kind: Literal["scratch", "finetune", "transfer"]
    schema: str
    starts_from: str | None = None

    @property
    def pretrained(self) -> bool:
        """Whether its weights come pretrained from elsewhere (fine-tuning, transfer)."""
        return self.kind != "scratch"


NOTEBOOKS: dict[str, NotebookEntry] = {
    "01_vit_scratch": NotebookEntry("ViT from scratch", "all", "scratch", "KerasVitNotebook"),
    "02_vit_scratch_10classes": NotebookEntry("ViT from scratch", "ten", "scratch",
                                              "KerasVitTenNotebook",
                                              starts_from="01_vit_scratch"),
    "03_vit_finetune": NotebookEntry("ViT fine-tuné", "all", "finetune", "HfNotebook"),
    "04_vit_finetune_10classes": NotebookEntry("ViT fine-tuné", "ten", "finetune",
                                               "HfNotebook"),
    "05_efficientnet": NotebookEntry("EfficientNetB0", "all", "transfer",
                                     "EfficientNetNotebook"),
}
"""The study's notebooks, in the order they run and the report tells them."""

SCRATCH = tuple(n for n, entry in NOTEBOOKS.items() if entry.kind == "scratch")
"""The from-scratch ViT notebooks (01, 02): the ones an exploration run trains."""

# The 10 classes of the 2022 report (official ids).
TEN_CLASSES = [56, 79, 98, 119, 144, 161, 167, 171, 182, 191]

# Stanford Cars as published (Krause et al., 2013), quoted beside the copy a run used:
# images, classes, and the official train / test split.
STANFORD_CARS = {"images": 16185, "classes": 196, "train": 8144, "test": 8041}

# The checkpoint that the 2022 study fine-tuned (notebooks 03 and 04).
CHECKPOINT_2022 = "google/vit-base-patch16-224-in21k"

# Numbers reported by the 2022 study (its report and notebooks), shown beside ours and
# labelled as such. With STANFORD_CARS, they are the only numbers typed by hand in this
# project, and only because they are quotations. `split` says what the 2022 number
# measured; `ours`, the runs of this study that replay it, when their names differ.
_LABEL_BUG = "artefact : étiquettes de test restées en 1..196"
_LABEL_SHIFT = ("mesuré avec le même décalage des étiquettes de test qu'en 01 : chiffre "
                "douteux, non comparable tel quel")
REFERENCE_2022 = {
    "01_vit_scratch": [
        {"run": "32px-patch6", "value": 0.01, "split": "test", "note": _LABEL_BUG},
        {"run": "72px-patch6", "value": 0.01, "split": "test", "note": _LABEL_BUG},
        {"run": "72px-patch6-16layers", "value": 0.01, "split": "test", "note": _LABEL_BUG},
    ],
    "02_vit_scratch_10classes": [
        {"run": "72px-patch6", "value": 0.21, "split": "test", "note": _LABEL_SHIFT},
        {"run": "72px-patch8", "value": 0.245, "split": "test", "note": _LABEL_SHIFT},
        {"run": "144px-patch16", "value": 0.209, "split": "test", "note": _LABEL_SHIFT},
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
