"""Opening an index the way every command that searches does: with the random-weights banner."""

from __future__ import annotations

from typing import Any


def open_index(index: str, **options: Any):
    """The index for a command, with the random-weights banner when it applies."""
    import xsearch
    from xsearch.cli.console import random_weights_banner

    idx = xsearch.open(index, **options)
    if idx.exists and idx.random_weights:
        random_weights_banner(model=idx.model_name)
    return idx
