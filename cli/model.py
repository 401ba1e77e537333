"""`xsearch model info|fetch`: what weights would be used, and getting the official ones."""

from __future__ import annotations

import json
import math
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from xsearch.cli.console import err, handle_errors, out
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
    from xsearch.models import resolve_device
    from xsearch.models.checkpoint import DEFAULT_CONFIG, config_for, read_state_dict
    from xsearch.models.config import get_config
    from xsearch.models.weights import resolve_weights

    choice = resolve_weights(weights)
    if choice.is_random:
        cfg = get_config(config or DEFAULT_CONFIG)
        from xsearch.models.checkpoint import expected_shapes

        n_params = sum(math.prod(s) for s in expected_shapes(cfg).values())
    else:
        state = read_state_dict(choice.path)
        try:
            cfg = config_for(state, config)
        except Exception as e:
            raise type(e)(f"{choice.path}: {e}") from None
        n_params = sum(t.numel() for t in state.values())
    facts = {
        "weights": "random" if choice.is_random else str(choice.path),
        "source": choice.source,
        "sha256": _recorded_sha256(choice.path),
        "config": cfg.name,
        "parameters": n_params,
        "embed_dim": cfg.embed_dim,
        "device": resolve_device(device),
    }
    if as_json:
        print(json.dumps(facts))
        return
    for key, value in facts.items():
        shown = f"{value:,}" if isinstance(value, int) else (value or "-")
        out.print(f"[bold]{key:>10}[/]  {shown}", highlight=False)


def _recorded_sha256(path: Path | None) -> str | None:
    """The digest `xsearch model fetch` recorded beside the file, if any."""
    if path is None:
        return None
    sidecar = path.with_name(path.name + ".sha256")
    return sidecar.read_text().split()[0] if sidecar.is_file() else None


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
    from xsearch.models.fetch import fetch_weights

    result = fetch_weights(variant.value, dest_dir, url=url)
    verb = "downloaded" if result.downloaded else "already present"
    out.print(f"{verb}: {result.path}", highlight=False)
    out.print(f"sha256: {result.sha256}", highlight=False)
    if not result.matches_release:
        err.print(
            "[yellow]warning:[/] the file is a valid AudioCLIP checkpoint, but its sha256 "
            "differs from the official release's recorded digest"
        )
