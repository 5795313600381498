"""The study itself: its profiles, its notebooks and their tasks, and the numbers of the
2022 report it replays.

A task is a set of classes with one train / validation / test split, shared by every
notebook of that task (:mod:`common.data.study`): the 196 classes (01, 03, 05) and the 10
classes of the 2022 report (02, 04), whose split is the 196 classes' split cut down to them.
"""

from __future__ import annotations

PROFILES = ("smoke", "cpu", "gpu")

# notebook -> its model, as the report names it (French); the report adds the number of
# classes that the notebook's results record
NOTEBOOKS = {
    "01_vit_scratch": "ViT from scratch",
    "02_vit_scratch_10classes": "ViT from scratch",
    "03_vit_finetune": "ViT fine-tuné",
    "04_vit_finetune_10classes": "ViT fine-tuné",
    "05_efficientnet": "EfficientNetB0",
}

# notebook -> its task: "all" (every class of the dataset) or "ten" (the study file's
# ten_classes)
TASKS = {
    "01_vit_scratch": "all",
    "02_vit_scratch_10classes": "ten",
    "03_vit_finetune": "all",
    "04_vit_finetune_10classes": "ten",
    "05_efficientnet": "all",
}

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
