"""`xsearch demo`: the main job on generated media: ingest a folder, then query it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xsearch.cli.common import open_encoder
from xsearch.cli.console import err, handle_errors, out
from xsearch.cli.options import BatchSize, Config, Device, Weights

QUERIES = [  # (kind, query, target)
    ("text", "a police siren", "audio"),
    ("text", "a red circle", "image"),
    ("audio", "siren.wav", "image"),
    ("text", "an orange sunset", "text"),
    ("text", "beeps at sunset", "all"),
]


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
    folder: Annotated[
        Path, typer.Option("--folder", help="Where to write the generated media.")
    ] = Path("xsearch-demo"),
    index: Annotated[str, typer.Option("--index", help="Index to build.")] = "demo",
) -> None:
    """Generate sounds, pictures and a video, ingest them into an index, and query it."""
    from xsearch.ingest.pipeline import IngestOptions, ingest
    from xsearch.ingest.scan import find_files
    from xsearch.samples import write_samples
    from xsearch.search.engine import search
    from xsearch.store.store import index_dir

    chosen = _choose_weights(weights, fetch)
    encoder = open_encoder(chosen, config, device, batch_size)
    write_samples(folder)
    target_dir = index_dir(index)
    _reset_if_other_model(target_dir, encoder)
    report = ingest(find_files([folder]), target_dir, encoder, IngestOptions(workers=1))
    items = ", ".join(f"{n} {m}" for m, n in sorted(report.items.items())) or "nothing new"
    out.print(
        f"ingested {folder}/ into index '{index}' ({target_dir}): {report.added} files added, "
        f"{report.unchanged} unchanged; {items}; {report.seconds:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
    from xsearch.media import load_audio
    from xsearch.store.store import Store

    store = Store.open(target_dir)
    for kind, query, target in QUERIES:
        vector = (
            encoder.embed_text([query])[0]
            if kind == "text"
            else encoder.embed_audio([load_audio(folder / query)])[0]
        )
        hits = search(store, vector, target, k=3)
        shown = ", ".join(f"{Path(h.path).name} ({h.score:.2f})" for h in hits)
        out.print(f"[bold]{kind} {query!r} -> {target}:[/] {shown}", highlight=False)
    source = "random weights" if encoder.weights.is_random else str(encoder.weights.path)
    out.print(f"model: {encoder.config.name} ({source}) on {encoder.device}", highlight=False)
    out.print(
        f"try: xsearch query --index {index} --text 'a ticking clock' --target audio",
        highlight=False,
    )


def _reset_if_other_model(directory: Path, encoder) -> None:
    """The demo owns its index: one built with other weights is rebuilt, not refused."""
    import shutil

    from xsearch.ingest.identity import model_identity
    from xsearch.store.manifest import read_manifest

    manifest = read_manifest(directory) if directory.is_dir() else None
    if manifest and manifest.model != model_identity(encoder):
        err.print(f"rebuilding {directory}: it was built with other weights", highlight=False)
        shutil.rmtree(directory)
