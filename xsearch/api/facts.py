"""Facts every shell shows the same way: targets and their labels, the random-weights warning
and where weights go. Defined here (or in the layer that owns them) once."""

from __future__ import annotations

from xsearch.search.targets import ALL_TARGETS, LABELS, targets_for

__all__ = ["ALL_TARGETS", "RANDOM_WEIGHTS_WARNING", "TARGET_LABELS", "install_hint", "targets_for"]

TARGET_LABELS = LABELS
RANDOM_WEIGHTS_WARNING = "Running on RANDOM weights: similarities and rankings are meaningless."


def install_hint(model: str | None = None) -> str:
    """How to install the official weights of `model` (default AudioCLIP; the models layer
    knows the files and folder)."""
    from xsearch.models.registry import DEFAULT_MODEL, model_names
    from xsearch.models.weights import install_hint as hint

    return hint(model if model in model_names() else DEFAULT_MODEL)
