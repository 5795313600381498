"""Where a model's weights came from: the ``weights`` record of a run."""

from __future__ import annotations


def weights_info(source: str, *, pretrained: bool, reason: str | None = None,
                 **details) -> dict:
    """Where a run's weights came from, the ``weights`` field of a run record.

    ``source``: the checkpoint or weights file loaded, ``"random-init"``, or
    ``"pretrained-here"`` (random weights first trained here by another run, on the same
    training split; the details then give ``from``, that run, and its ``classes``).
    ``pretrained``: the weights were trained elsewhere (ImageNet...). ``reason``: why the
    pretrained weights that were asked for (``requested``) could not be used.
    """
    return {"source": str(source), "pretrained": bool(pretrained), "reason": reason,
            **details}
