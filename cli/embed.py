"""`xsearch embed text|image|audio`: inputs -> L2-normalised float32 vectors."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from xsearch import api
from xsearch.cli.console import err, handle_errors, out, random_weights_banner
from xsearch.cli.options import BatchSize, Config, Device, Json, Precision, Weights

app = typer.Typer(
    help="Embed texts, images or audio into the model's shared space.", no_args_is_help=True
)

Out = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Write a float32 [n, dim] .npy file, one row per input."),
]


def _embed(
    modality: str,
    inputs: list[str],
    weights: str | None,
    config: str | None,
    device: str,
    batch_size: int,
    precision: str,
) -> Any:
    """The vectors, with the random-weights banner when it applies (after the inputs and the
    weights have proved usable, so an error comes alone)."""
    working = err.status("embedding...") if err.is_terminal else nullcontext()
    with working:
        vectors = api.embed(modality, inputs, weights, config, device, batch_size, precision)
    if api.weights_info(weights, config).is_random:
        random_weights_banner(model=config)
    return vectors


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
    precision: Precision = "fp32",
) -> None:
    """Embed texts (over-long texts are truncated to the model's context, with a warning)."""
    vectors = _embed("text", texts, weights, config, device, batch_size, precision)
    _emit(texts, "text", vectors, out_path, as_json)


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
    precision: Precision = "fp32",
) -> None:
    """Embed images; a video gives its central frame."""
    names = [str(f) for f in files]
    vectors = _embed("image", names, weights, config, device, batch_size, precision)
    _emit(names, "image", vectors, out_path, as_json)


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
    precision: Precision = "fp32",
) -> None:
    """Embed whole audio files (decoded to the model's sample rate, mono); a video gives its
    audio track."""
    names = [str(f) for f in files]
    vectors = _embed("audio", names, weights, config, device, batch_size, precision)
    _emit(names, "audio", vectors, out_path, as_json)
