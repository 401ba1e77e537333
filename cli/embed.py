"""`xsearch embed text|image|audio`: inputs -> L2-normalised float32 vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from xsearch.cli.common import open_encoder
from xsearch.cli.console import err, handle_errors, out
from xsearch.cli.options import BatchSize, Config, Device, Json, Weights

app = typer.Typer(
    help="Embed texts, images or audio into the shared 1024-d space.", no_args_is_help=True
)

Out = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Write a float32 [n, dim] .npy file, one row per input."),
]


def _emit(inputs: list[str], modality: str, vectors, out_path: Path | None, as_json: bool) -> None:
    import numpy as np

    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        np.save(out_path, vectors.astype(np.float32))
        err.print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} float32 to {out_path}")
    if as_json:
        for i, (item, row) in enumerate(zip(inputs, vectors)):
            record = {"index": i, "input": item, "modality": modality}
            record["embedding"] = [round(float(v), 7) for v in row]
            print(json.dumps(record))
    elif out_path is None:
        _similarity_table(inputs, vectors)


def _similarity_table(inputs: list[str], vectors) -> None:
    """Without --out or --json: show how the inputs relate (cosine similarity)."""
    from rich.table import Table

    sims = vectors @ vectors.T
    table = Table(title=f"cosine similarity ({vectors.shape[0]} x {vectors.shape[1]}-d)")
    table.add_column("input", overflow="fold")
    for i in range(len(inputs)):
        table.add_column(str(i), justify="right")
    for i, name in enumerate(inputs):
        table.add_row(f"{i}: {name}", *(f"{sims[i, j]:.3f}" for j in range(len(inputs))))
    out.print(table)


def _decode_all(paths: list[Path], decode) -> list:
    """Decode every file first, so that all bad inputs are reported before any model work."""
    from xsearch.errors import MediaError

    decoded, problems = [], []
    for path in paths:
        try:
            decoded.append(decode(path))
        except MediaError as e:
            problems.append(str(e))
    if problems:
        for p in problems[:-1]:
            err.print(f"[bold red]error:[/] {p}", highlight=False)
        raise MediaError(problems[-1])
    return decoded


@app.command("text")
@handle_errors
def embed_text(
    texts: Annotated[list[str], typer.Argument(help="Texts; a comma-separated label list works.")],
    out_path: Out = None,
    as_json: Json = False,
    weights: Weights = None,
    config: Config = None,
    device: Device = "auto",
    batch_size: BatchSize = 32,
) -> None:
    """Embed texts (over-long texts are truncated to 77 tokens, with a warning)."""
    encoder = open_encoder(weights, config, device, batch_size)
    _emit(texts, "text", encoder.embed_text(texts), out_path, as_json)


@app.command("image")
@handle_errors
def embed_image(
    files: Annotated[list[Path], typer.Argument(help="Image files, or videos (central frame).")],
    out_path: Out = None,
    as_json: Json = False,
    weights: Weights = None,
    config: Config = None,
    device: Device = "auto",
    batch_size: BatchSize = 16,
) -> None:
    """Embed images; a video gives its central frame."""
    from xsearch.media import load_image

    images = _decode_all(files, load_image)
    encoder = open_encoder(weights, config, device, batch_size)
    _emit([str(f) for f in files], "image", encoder.embed_images(images), out_path, as_json)


@app.command("audio")
@handle_errors
def embed_audio(
    files: Annotated[list[Path], typer.Argument(help="Audio files, or videos (audio track).")],
    out_path: Out = None,
    as_json: Json = False,
    weights: Weights = None,
    config: Config = None,
    device: Device = "auto",
    batch_size: BatchSize = 8,
) -> None:
    """Embed whole audio files (decoded to 44.1 kHz mono); a video gives its audio track."""
    from xsearch.media import load_audio

    waves = _decode_all(files, load_audio)
    encoder = open_encoder(weights, config, device, batch_size)
    _emit([str(f) for f in files], "audio", encoder.embed_audio(waves), out_path, as_json)
