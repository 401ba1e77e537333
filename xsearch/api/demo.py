"""The demo: generate a few sounds, pictures and a video, ingest them into the demo's own index,
and query it. It never touches an index it did not create."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from xsearch.api.index import Hit, Index, open_index
from xsearch.errors import UsageError

if TYPE_CHECKING:
    from xsearch.ingest.pipeline import IngestReport

# A file in the index folder saying the demo created it (and may rebuild it).
DEMO_MARKER = "demo-index"
QUERIES = [  # (kind, query, target)
    ("text", "a police siren", "audio"),
    ("text", "a red circle", "image"),
    ("audio", "siren.wav", "image"),
    ("text", "an orange sunset", "text"),
    ("text", "beeps at sunset", "all"),
]


@dataclass
class DemoReport:
    """What the demo did: its folder and index, the ingest, and each query's hits."""

    folder: Path
    index: Index
    ingest: IngestReport
    random_weights: bool
    weights: str  # the checkpoint's path, or "random"
    device: str
    config: str
    rebuilt: bool = False  # the demo's own index was built with other weights and was redone
    results: list[tuple[str, str, str, list[Hit]]] = field(default_factory=list)


def choose_weights(
    weights: str | None,
    fetch: bool,
    on_message: Callable[[str], None] = print,
    on_download: Callable[[int, int | None], None] | None = None,
) -> str:
    """The weights to use: the ones given or found, freshly fetched ones, or random."""
    from xsearch.errors import DownloadError, WeightsNotFound
    from xsearch.models.weights import resolve_weights

    try:
        choice = resolve_weights(weights)
        return "random" if choice.is_random else str(choice.path)
    except WeightsNotFound:
        if weights is not None:
            raise
    if fetch:
        from xsearch.models.fetch import fetch_weights

        on_message("no weights installed; trying to fetch the official ones...")
        try:
            return str(fetch_weights("full", progress=on_download).path)
        except DownloadError as e:
            on_message(f"could not fetch the weights: {e}")
    return "random"


def run_demo(
    folder: str | os.PathLike[str] = "xsearch-demo",
    index: str = "demo",
    *,
    root: str | os.PathLike[str] | None = None,
    weights: str | None = None,
    fetch: bool = True,
    config: str | None = None,
    device: str = "auto",
    batch_size: int = 8,
    on_message: Callable[[str], None] = print,
    on_download: Callable[[int, int | None], None] | None = None,
) -> DemoReport:
    """Write the generated samples to `folder`, ingest them into the demo's index `index`,
    and run a few queries. Without weights it fetches them (`on_download(bytes, total)`
    hears the progress), and when that fails it uses random weights.
    An existing index that the demo did not create is refused, never changed."""
    from xsearch.ingest.pipeline import IngestOptions
    from xsearch.models import load_encoder

    idx = open_index(index, root, create=True, config=config, device=device)
    _claim(idx)
    chosen = choose_weights(weights, fetch, on_message, on_download)
    encoder = load_encoder(chosen, config=config, device=device, batch_size=batch_size)
    rebuilt = _reset_if_other_model(idx, encoder)
    idx.use_encoder(encoder)

    from xsearch.samples import write_samples

    folder = Path(folder)
    write_samples(folder)
    report = idx.ingest([folder], IngestOptions(workers=1))
    demo = DemoReport(
        folder=folder,
        index=idx,
        ingest=report,
        random_weights=encoder.weights.is_random,
        weights="random" if encoder.weights.is_random else str(encoder.weights.path),
        device=str(getattr(encoder, "device", device)),
        config=encoder.spec.config,
        rebuilt=rebuilt,
    )
    for kind, query, target in QUERIES:
        if target not in idx.targets:
            continue
        given = {"text": query} if kind == "text" else {kind: folder / query}
        demo.results.append((kind, query, target, idx.search(**given, target=target, k=3)))
    return demo


def _claim(idx: Index) -> None:
    """Mark a new index as the demo's; refuse one the demo did not create."""
    marker = idx.dir / DEMO_MARKER
    if marker.is_file():
        return
    if idx.exists:
        raise UsageError(
            f"index {idx.name} exists and was not made by the demo, which leaves it as it is; "
            "give the demo another index name"
        )
    idx.dir.mkdir(parents=True, exist_ok=True)
    marker.write_text("made by `xsearch demo`: it may rebuild this index\n")


def _reset_if_other_model(idx: Index, encoder) -> bool:
    """The demo's own index, built with other weights, is emptied under the writer lock (its
    generated media are written again), so that the demo runs with the weights found now."""
    from xsearch.ingest.identity import model_identity
    from xsearch.store.lock import WriterLock
    from xsearch.store.manifest import MANIFEST, read_manifest
    from xsearch.store.store import DATA, LOCK

    with WriterLock(idx.dir / LOCK):
        manifest = read_manifest(idx.dir)
        if manifest is None or manifest.model == model_identity(encoder):
            return False
        (idx.dir / MANIFEST).unlink()  # first: the index is now empty, never half-deleted
        shutil.rmtree(idx.dir / DATA, ignore_errors=True)
    idx.refresh()
    return True
