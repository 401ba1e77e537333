"""`xsearch demo`: the whole embedding pipeline on generated samples, as similarity tables."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from xsearch.cli.common import install_hint
from xsearch.cli.console import err, handle_errors, out, random_weights_banner
from xsearch.cli.options import BatchSize, Config, Device, Weights


def _choose_weights(weights: str | None, fetch: bool) -> str | None:
    """The weights option to use: found ones, freshly fetched ones, or random (with a banner)."""
    from xsearch.errors import DownloadError, WeightsNotFound
    from xsearch.models.weights import resolve_weights

    try:
        resolve_weights(weights)
        return weights
    except WeightsNotFound:
        if weights is not None:
            raise
    if fetch:
        from xsearch.models.fetch import fetch_weights

        err.print("no AudioCLIP weights installed; trying to fetch the official ones...")
        try:
            return str(fetch_weights("full").path)
        except DownloadError as e:
            err.print(
                f"[yellow]could not fetch the weights:[/] {e}", highlight=False, soft_wrap=True
            )
    return "random"


@handle_errors
def demo(
    weights: Weights = None,
    config: Config = None,
    device: Device = "auto",
    batch_size: BatchSize = 8,
    fetch: Annotated[
        bool, typer.Option("--fetch/--no-fetch", help="Fetch the official weights if missing.")
    ] = True,
    keep: Annotated[
        Path | None, typer.Option("--keep", help="Write the samples here and keep them.")
    ] = None,
) -> None:
    """Embed generated sounds, pictures and a video, and show which text matches which."""
    from xsearch.media import load_audio, load_image
    from xsearch.models import load_encoder
    from xsearch.samples import DESCRIPTIONS, write_samples

    chosen = _choose_weights(weights, fetch)
    encoder = load_encoder(chosen, config=config, device=device, batch_size=batch_size)
    if encoder.weights.is_random:
        random_weights_banner(install_hint())

    with tempfile.TemporaryDirectory(prefix="xsearch-demo-") as tmp:
        folder = keep or Path(tmp)
        paths = write_samples(folder)
        audio_paths = [p for p in paths if p.suffix in (".wav", ".mp4")]
        image_paths = [p for p in paths if p.suffix in (".png", ".mp4")]
        waves = [load_audio(p) for p in audio_paths]
        images = [load_image(p) for p in image_paths]

    texts = list(DESCRIPTIONS.values())
    text_vecs = encoder.embed_text(texts)
    audio_vecs = encoder.embed_audio(waves)
    image_vecs = encoder.embed_images(images)
    audio_names, image_names = [p.stem for p in audio_paths], [p.stem for p in image_paths]
    _table("text -> audio", texts, audio_names, text_vecs @ audio_vecs.T)
    _table("text -> image", texts, image_names, text_vecs @ image_vecs.T)
    _table("audio -> image", audio_names, image_names, audio_vecs @ image_vecs.T)
    source = "random weights" if encoder.weights.is_random else str(encoder.weights.path)
    out.print(f"model: {encoder.config.name} ({source}) on {encoder.device}", highlight=False)
    if keep:
        out.print(f"samples kept in {keep}", highlight=False)


def _table(title: str, rows: list[str], cols: list[str], sims) -> None:
    """Cosine similarities, each row's best match in bold."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("query")
    for c in cols:
        table.add_column(c, justify="right")
    for name, row in zip(rows, sims):
        best = int(row.argmax())
        cells = [f"[bold]{v:.3f}[/]" if j == best else f"{v:.3f}" for j, v in enumerate(row)]
        table.add_row(name, *cells)
    out.print(table)
