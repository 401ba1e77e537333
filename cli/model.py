"""`xsearch model list|info|fetch`: the models, what a command would load, the official files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from xsearch import api
from xsearch.cli.console import DownloadBar, err, handle_errors, out
from xsearch.cli.options import Config, Device, Json, Weights

app = typer.Typer(help="List models, inspect and fetch their weights.", no_args_is_help=True)


@app.command("list")
@handle_errors
def list_models(as_json: Json = False) -> None:
    """Every model an index can be built with: family, modalities, width, weights, licence."""
    cards = [card.as_dict() for card in api.list_models()]
    if as_json:
        for card in cards:
            print(json.dumps(card))
        return
    table = Table(box=None, header_style="bold")
    for column in ("name", "family", "modalities", "dim", "weights", "licence"):
        table.add_column(column, justify="right" if column == "dim" else "left")
    for card in cards:
        weights = ", ".join(card["weights"]) or "random only"
        table.add_row(
            card["name"], card["family"], ", ".join(card["modalities"]), str(card["dim"]),
            weights, card["licence"],
        )  # fmt: skip
    out.print(table)
    for card in cards:
        for gap in card["gaps"]:
            out.print(f"[yellow]{card['name']}:[/] {gap}", highlight=False)


@app.command("info")
@handle_errors
def info(
    weights: Weights = None,
    config: Config = None,
    device: Device = "auto",
    as_json: Json = False,
) -> None:
    """Show the weights, config, parameter count and device a command would use."""
    facts = api.model_info(weights, device=device, model=config).as_dict()
    if as_json:
        print(json.dumps(facts))
        return
    for key, value in facts.items():
        out.print(f"[bold]{key:>10}[/]  {_shown(value)}", highlight=False)


def _shown(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return ", ".join(value)
    return value or "-"


@app.command("fetch")
@handle_errors
def fetch(
    model: Annotated[
        str,
        typer.Argument(help="Model name (see `xsearch model list`); default audioclip."),
    ] = "audioclip",
    variant: Annotated[
        str | None,
        typer.Argument(
            help="Which published checkpoint (default: the model's first; AudioCLIP: full, "
            "trained end to end, or partial, audio head only).",
            show_default=False,
        ),
    ] = None,
    dest_dir: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to store it (default: the model's cache folder)."),
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="Download the checkpoint from this mirror.")
    ] = None,
    files_url: Annotated[
        str | None,
        typer.Option("--files-url", help="Download the tokenizer files from this folder URL."),
    ] = None,
) -> None:
    """Download a model's official checkpoint (resumable) and tokenizer files, verify and
    cache them. `xsearch model fetch full|partial` still means AudioCLIP's."""
    if variant is None and model in _AUDIOCLIP_VARIANTS:
        model, variant = "audioclip", model
    bar = DownloadBar(f"{model} {variant or ''}".strip()) if err.is_terminal else None
    try:
        result = api.fetch_weights(
            variant, dest_dir, url=url, progress=bar, model=model, files_url=files_url
        )
    finally:
        if bar is not None:
            bar.close()
    verb = "downloaded" if result.downloaded else "already present"
    out.print(f"{verb}: {result.path}", highlight=False)
    out.print(f"sha256: {result.sha256}", highlight=False)
    for path in result.files:
        out.print(f"tokenizer: {path}", highlight=False)
    with err.status("preparing each tower for fast loading"):
        api.prepare_weights(result.path, model)
    if not result.matches_release:
        err.print(
            f"[yellow]warning:[/] the file is a valid {model} checkpoint, but its sha256 "
            "differs from the official release's recorded digest"
        )


@app.command("convert")
@handle_errors
def convert(
    model: Annotated[str, typer.Argument(help="Model name, e.g. mmv-s3d.")],
    source: Annotated[Path, typer.Argument(help="The official parameter file (MMV's .pkl).")],
    dest: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write it (default: the model's cache file)."),
    ] = None,
    vocabulary: Annotated[
        Path | None,
        typer.Option("--vocab", help="The text tower's word list, one word per line."),
    ] = None,
) -> None:
    """Convert an official parameter file that is a pickle (MMV) into the checkpoint commands
    load, once; nothing in the file runs: only arrays are read."""
    with err.status(f"converting {source.name}"):
        path = api.convert_weights(model, source, dest, vocabulary)
    out.print(f"converted: {path}", highlight=False)


# `xsearch model fetch full` predates model names: AudioCLIP's checkpoint names.
_AUDIOCLIP_VARIANTS = ("full", "partial")
