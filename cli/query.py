"""`xsearch query`: text, image, audio or video queries against one modality of an index."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from xsearch.cli.common import open_encoder
from xsearch.cli.console import handle_errors, out
from xsearch.cli.options import Device, IndexName, Json


class Target(str, Enum):
    audio = "audio"
    image = "image"
    text = "text"


FileList = Annotated[list[Path] | None, typer.Option(show_default=False)]


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
    device: Device = "auto",
    as_json: Json = False,
) -> None:
    """Find the items of one modality nearest to the queries (several are fused)."""
    import numpy as np

    from xsearch.errors import UsageError
    from xsearch.media import load_audio, load_image
    from xsearch.search.engine import fuse, search
    from xsearch.store.store import Store, index_dir

    if not (text or image or audio or video):
        raise UsageError("give a query: --text, --image, --audio or --video")
    store = Store.open(index_dir(index))
    if store.manifest is None:
        raise UsageError(f"index {index} is empty")
    encoder = _encoder_for(store, device)
    vectors = []
    if text:
        vectors.append(encoder.embed_text(text))
    images = [load_image(p) for p in (image or []) + (video or [])]
    if images:
        vectors.append(encoder.embed_images(images))
    sounds = [load_audio(p) for p in (audio or []) + _with_audio(video or [])]
    if sounds:
        vectors.append(encoder.embed_audio(sounds))
    hits = search(store, fuse(np.concatenate(vectors)), target.value, k)
    if as_json:
        for hit in hits:
            print(json.dumps(hit.as_dict()))
        return
    _table(hits)


def _with_audio(videos: list[Path]) -> list[Path]:
    """The query videos that have a sound track (a silent one queries with its frame only)."""
    import av

    kept = []
    for path in videos:
        try:
            with av.open(str(path)) as container:
                if container.streams.audio:
                    kept.append(path)
        except av.FFmpegError:
            pass  # load_image already reported an undecodable file
    return kept


def _encoder_for(store, device: str):
    """The model the index was built with (its weights are recorded in the manifest)."""
    from xsearch.errors import UsageError
    from xsearch.ingest.identity import model_identity

    recorded = store.manifest.model
    weights = None if recorded.get("weights") != "random" else "random"
    encoder = open_encoder(weights, recorded.get("config"), device, 16)
    if model_identity(encoder) != recorded:
        raise UsageError(
            f"index {store.dir.name} was built with other weights than the ones found now "
            "(pass the same --weights / XSEARCH_WEIGHTS used to build it)"
        )
    return encoder


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
