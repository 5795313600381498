"""The two training stages of EfficientNetB0 (notebook 05): one stage is compiled, trained
(best validation checkpoint kept), evaluated on the test split and saved."""

from __future__ import annotations

from pathlib import Path

import keras

from common.config.schema import EfficientNetRun, Stage, UnfrozenStage
from common.inference.probabilities import keras_probabilities
from common.models import folder
from common.results.contract import run_record
from common.results.records import Run
from common.training.keras_fit import static_shapes, train


def train_stage(model, name: str, arrays: dict, stage: Stage, p: EfficientNetRun, *,
                labels: dict, weights: dict, model_dir, test_images: list[str], seed: int = 0
                ) -> tuple[Run, keras.Model, object]:
    """Compile with Adam, train one ``stage`` (its epochs and learning rate; the batch size of
    ``p``) with the best validation checkpoint kept, evaluate on the test split and save the
    model folder. ``arrays``: ``train``/``val``/``test`` -> (uint8 x, labels);
    ``test_images``: the test images' ids, in the order of ``arrays["test"]``.

    Returns the run record, the best model and the test probabilities.
    """
    epochs, batch_size = stage.epochs, p.batch_size
    params = {"stage": "frozen backbone" if not isinstance(stage, UnfrozenStage)
              else "top blocks unfrozen", "image_size": p.image_size, "batch_size": batch_size,
              "cap_per_class": p.cap_per_class, "augment_in_model": p.augment_in_model,
              "jit_compile": p.jit_compile, **stage.model_dump()}
    static_shapes(p.jit_compile)
    model.compile(optimizer=keras.optimizers.Adam(stage.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  jit_compile=p.jit_compile)
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = arrays["train"], arrays["val"], arrays["test"]
    trained = train(model, x_tr, y_tr, x_va, y_va, epochs=epochs, batch_size=batch_size,
                    verbose=2, seed=seed, checkpoint_path=model_dir / folder.KERAS_FILE,
                    augmentation="none" if p.augment_in_model else "efficientnet")
    probs = keras_probabilities(trained["model"], x_te, batch_size)
    folder.write_info(model_dir, labels, {
        "framework": "keras", "model_file": folder.KERAS_FILE,
        "image_size": int(x_te.shape[1]),
        "crop_mode": p.study.crop_mode, "crop_margin": p.study.crop_margin,
        "normalisation": "inside the model (EfficientNet rescaling); input RGB pixels 0..255"})
    record = run_record(name, params, weights, y_te, probs, trained, model_dir,
                        images=test_images)
    return record, trained["model"], probs
