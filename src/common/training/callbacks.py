"""The Keras callbacks of a training (:func:`common.training.keras_fit.train`): its
throughput, the checkpoint of the best validation epoch, and a line an epoch.

None of them waits for the device after a step: a callback with a per-step hook makes Keras
fetch each step's logs (unless it says ``async_safe``), which stalls an accelerator between
steps.
"""

from __future__ import annotations

import time

import keras
from keras import ops


class ThroughputCallback(keras.callbacks.Callback):
    """Training throughput in images/s and total ``fit`` wall time.

    Per epoch the training time runs from the epoch start to the end of its last step,
    read when validation starts (validation is excluded). It waits for the device twice an
    epoch, never after a step: a hook on every step would make Keras fetch each step's
    logs, which stalls an accelerator between steps. When there is more than one epoch the
    first one (graph tracing, compilation) is left out of the rate.
    """

    def __init__(self, num_train_images: int):
        super().__init__()
        self.num_train_images = int(num_train_images)
        self.epoch_seconds: list[float] = []
        self.train_seconds = 0.0
        self._t_epoch = self._t_last = None

    def _wait(self) -> float:
        """The time once the device has finished what was queued: reading a weight back
        waits for the steps that write it."""
        if self.model.trainable_weights:
            ops.convert_to_numpy(self.model.trainable_weights[-1].value)
        return time.perf_counter()

    def on_train_begin(self, logs=None):
        self._t_fit = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._t_epoch, self._t_last = self._wait(), None

    def on_test_begin(self, logs=None):  # validation of the epoch: its steps are done
        if self._t_epoch is not None and self._t_last is None:
            self._t_last = self._wait()

    def on_epoch_end(self, epoch, logs=None):
        if self._t_last is None:  # no validation
            self._t_last = self._wait()
        self.epoch_seconds.append(self._t_last - self._t_epoch)
        self._t_epoch = None

    def on_train_end(self, logs=None):
        self.train_seconds = time.perf_counter() - self._t_fit

    @property
    def images_per_second(self) -> float:
        secs = self.epoch_seconds[1:] if len(self.epoch_seconds) > 1 else self.epoch_seconds
        return self.num_train_images * len(secs) / max(sum(secs), 1e-9)


class BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` on the best ``val_accuracy``, among the epochs from
    ``first_epoch`` (1-based) on only. Saved once an epoch, so its per-step hook does
    nothing: ``async_safe`` lets Keras go on without waiting for each step's logs."""

    async_safe = True

    def __init__(self, path, first_epoch: int = 1):
        super().__init__(path, monitor="val_accuracy", save_best_only=True, mode="max")
        self.first_epoch = int(first_epoch)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.first_epoch:
            super().on_epoch_end(epoch, logs)


class EpochLog(keras.callbacks.Callback):
    """One line an epoch, as ``fit(verbose=2)`` prints, without Keras' progress bar, whose
    hook on every step makes Keras wait for the device after each one."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = int(epochs)

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        values = " - ".join(f"{k}: {v:.4f}" for k, v in (logs or {}).items()
                            if isinstance(v, (int, float)))
        print(f"Epoch {epoch + 1}/{self.epochs} - {time.perf_counter() - self._t:.0f}s - "
              f"{values}", flush=True)
