"""Loading the encoder the way every command does it: resolve weights, warn about random ones."""

from __future__ import annotations

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


def open_encoder(
    weights: str | None, config: str | None, device: str, batch_size: int
) -> Encoder:
    """The encoder for a command, with the random-weights banner when it applies."""
    from xsearch.models import load_encoder

    with err.status("loading model...", spinner="dots") if err.is_terminal else _nothing():
        encoder = load_encoder(weights, config=config, device=device, batch_size=batch_size)
    if encoder.weights.is_random:
        random_weights_banner(install_hint())
    return encoder


class _nothing:  # noqa: N801 - a null context manager without importing contextlib twice
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
