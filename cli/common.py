"""What several commands share beyond options: the install hint and progress display."""

from __future__ import annotations

from typing import Any


def install_hint() -> str:
    from xsearch.api import install_hint as hint

    return hint()


def open_index(index: str, **options: Any):
    """The index for a command, with the random-weights banner when it applies."""
    import xsearch
    from xsearch.cli.console import random_weights_banner

    idx = xsearch.open(index, **options)
    if idx.exists and idx.random_weights:
        random_weights_banner()
    return idx
