"""`xsearch query`: text, image, audio or video queries against one modality of an index."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from xsearch.cli.common import install_hint
from xsearch.cli.console import handle_errors, out, random_weights_banner
from xsearch.cli.options import Device, IndexName, Json


class Target(str, Enum):
    audio = "audio"
    image = "image"
    text = "text"


@handle_errors
def query(
    text: Annotated[list[str] | None, typer.Option("--text", "-t", help="Query text.")] = None,
    image: Annotated[
        list[Path] | None, typer.Option("--image", help="Query image file.", show_default=False)
    ] = None,
    audio: Annotated[
        list[Path] | None, typer.Option("--audio", help="Query audio file.", show_default=False)
    ] = None,
    video: Annotated[
        list[Path] | None,
        typer.Option("--video", help="Query video (its frame and sound).", show_default=False),
    ] = None,
    target: Annotated[Target, typer.Option(help="Modality to search.")] = Target.audio,
    k: Annotated[int, typer.Option("-k", help="Number of results.")] = 10,
    index: IndexName = "default",
    where: Annotated[
        str | None,
        typer.Option(
            help="SQL filter over item and asset columns, e.g. \"kind = 'video' AND start > 60\"."
        ),
    ] = None,
    exclude_self: Annotated[
        bool, typer.Option("--exclude-self", help="Leave out indexed copies of the query files.")
    ] = False,
    nprobe: Annotated[
        int | None, typer.Option(min=1, help="IVF indexes: inverted lists to visit.")
    ] = None,
    ef: Annotated[int | None, typer.Option(min=1, help="HNSW indexes: search breadth.")] = None,
    device: Device = "auto",
    as_json: Json = False,
) -> None:
    """Find the items of one modality nearest to the queries (several are fused)."""
    import xsearch

    idx = xsearch.open(index, device=device)
    if idx.store.manifest.model.get("weights") == "random":
        random_weights_banner(install_hint())
    hits = idx.search(
        text=text or (),
        image=image or (),
        audio=audio or (),
        video=video or (),
        target=target.value,
        k=k,
        where=where,
        exclude_self=exclude_self,
        nprobe=nprobe,
        ef=ef,
    )
    if as_json:
        for hit in hits:
            print(json.dumps(hit.as_dict()))
        return
    _table(hits)


def _table(hits) -> None:
    from rich.table import Table

    table = Table()
    for col in ("#", "score", "path", "modality", "time", "labels"):
        table.add_column(col, justify="right" if col in ("#", "score") else "left")
    for h in hits:
        span = f"{h.start:.1f}-{h.end:.1f} s" if h.start is not None else ""
        if h.modality == "image" and h.start is not None:
            span = f"frame at {h.start:.1f} s"
        table.add_row(str(h.rank), f"{h.score:.3f}", h.path, h.modality, span, ", ".join(h.labels))
    out.print(table)
