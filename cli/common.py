"""Loading the encoder the way every command does it: resolve weights, warn about random ones."""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING

from xsearch.cli.console import err, random_weights_banner

if TYPE_CHECKING:
    from xsearch.models.encoder import Encoder


def install_hint() -> str:
    from xsearch.models.weights import RELEASES, weights_dir

    return (
        f"run `xsearch model fetch`, or put {RELEASES['full'].filename} in {weights_dir()}"
        " (or pass --weights PATH, or set XSEARCH_WEIGHTS)."
    )


def open_encoder(weights: str | None, config: str | None, device: str, batch_size: int) -> Encoder:
    """The encoder for a command, with the random-weights banner when it applies."""
    from xsearch.models import load_encoder

    loading = err.status("loading model...") if err.is_terminal else nullcontext()
    with loading:
        encoder = load_encoder(weights, config=config, device=device, batch_size=batch_size)
    if encoder.weights.is_random:
        random_weights_banner(install_hint())
    return encoder
