"""`xsearch model info|fetch`: what weights would be used, and getting the official ones."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from xsearch import api
from xsearch.cli.console import DownloadBar, err, handle_errors, out
from xsearch.cli.options import Config, Device, Json, Weights

app = typer.Typer(help="Inspect and fetch the AudioCLIP weights.", no_args_is_help=True)


class Variant(str, Enum):
    full = "full"
    partial = "partial"


@app.command("info")
@handle_errors
def info(
    weights: Weights = None,
    config: Config = None,
    device: Device = "auto",
    as_json: Json = False,
) -> None:
    """Show the weights, config, parameter count and device a command would use."""
    facts = api.model_info(weights, config, device).as_dict()
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
    variant: Annotated[
        Variant,
        typer.Argument(
            help="full: trained on AudioSet end to end (the default); "
            "partial: audio head only, image/text kept as CLIP's."
        ),
    ] = Variant.full,
    dest_dir: Annotated[
        Path | None, typer.Option("--dir", help="Where to store it (default: the user cache).")
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="Download from this mirror instead.")
    ] = None,
) -> None:
    """Download an official AudioCLIP checkpoint (resumable), verify it, and cache it."""
    bar = DownloadBar(f"AudioCLIP {variant.value}") if err.is_terminal else None
    try:
        result = api.fetch_weights(variant.value, dest_dir, url=url, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    verb = "downloaded" if result.downloaded else "already present"
    out.print(f"{verb}: {result.path}", highlight=False)
    out.print(f"sha256: {result.sha256}", highlight=False)
    with err.status("preparing each tower for fast loading"):
        api.prepare_weights(result.path)
    if not result.matches_release:
        err.print(
            "[yellow]warning:[/] the file is a valid AudioCLIP checkpoint, but its sha256 "
            "differs from the official release's recorded digest"
        )
