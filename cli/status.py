"""`xsearch status` and `xsearch index rebuild|compact|upgrade`: what an index holds, and
maintaining it."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from xsearch.cli.console import handle_errors, out
from xsearch.cli.options import IndexName, Json

index_app = typer.Typer(
    help="Maintain an index: re-type its FAISS files, merge its segments, upgrade its format.",
    no_args_is_help=True,
)


@handle_errors
def status(
    index: IndexName = "default",
    failures: Annotated[
        bool, typer.Option("--failures", help="List each failed file and its reason.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Show what an index holds: assets, items per modality, generation, size, model."""
    import xsearch

    facts = xsearch.open(index).status(failures=failures)
    if as_json:
        print(json.dumps(facts.as_dict()))
        return
    items = ", ".join(f"{n} {m}" for m, n in facts.items.items()) or "none"
    model = facts.model or {}
    out.print(f"[bold]{facts.index}[/] ({facts.path})", highlight=False)
    out.print(
        f"  generation {facts.generation}, {facts.segments} segment"
        f"{'' if facts.segments == 1 else 's'}, {facts.bytes / 1e6:.1f} MB",
        highlight=False,
    )
    out.print(f"  {facts.assets} assets; items: {items}", highlight=False)
    out.print(
        f"  model: {model.get('config', '-')}, weights {model.get('weights', '-')}",
        highlight=False,
    )
    if facts.recipe:
        recipe = ", ".join(f"{k} {v}" for k, v in facts.recipe.items())
        out.print(f"  recipe: {recipe}", highlight=False)
    for note in facts.notes:
        out.print(f"  {note}", highlight=False)
    out.print(f"  {facts.failures} failed files", highlight=False)
    for row in facts.failed or []:
        out.print(f"    {row['path']}: {row['reason']}", highlight=False, soft_wrap=True)


@index_app.command("rebuild")
@handle_errors
def rebuild(
    index: IndexName = "default",
    factory: Annotated[
        str, typer.Option(help="FAISS index factory string, e.g. Flat, HNSW32, IVF1024,PQ64.")
    ] = "Flat",
    on_disk: Annotated[
        bool,
        typer.Option(
            "--on-disk",
            help="IVF indexes: keep the inverted lists in a file beside the index that "
            "searches map instead of loading (for indexes larger than memory).",
        ),
    ] = False,
    train_sample: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Vectors to train on, drawn uniformly from the stored embeddings "
            "(default: at least 100,000 and 40 per IVF list).",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Vectors read from the stored embeddings at a time.")
    ] = 32_768,
    as_json: Json = False,
) -> None:
    """Rebuild the FAISS indexes from the stored embeddings (no re-embedding), streaming
    them: memory holds one batch and the training sample, not the collection."""
    from dataclasses import asdict

    import xsearch

    idx = xsearch.open(index)
    reports = idx.rebuild(
        factory, on_disk=on_disk, train_sample=train_sample, batch_size=batch_size
    )
    generation = idx.status().generation
    if as_json:
        facts = {"index": index, "generation": generation, "factory": factory}
        facts.update(on_disk=on_disk, modalities=[asdict(r) for r in reports])
        print(json.dumps(facts))
        return
    out.print(f"{index}: rebuilt as {factory}, generation {generation}", highlight=False)
    for r in reports:
        size = sum(r.files.values()) / 1e6
        trained = f", trained on {r.train_sample:,} in {r.train_s:.1f} s" if r.train_sample else ""
        out.print(
            f"  {r.modality}: {r.items:,} items{trained}, added in {r.add_s:.1f} s, "
            f"{size:.1f} MB" + (" (lists on disk)" if f"ivfdata/{r.modality}" in r.files else ""),
            highlight=False,
        )


@index_app.command("compact")
@handle_errors
def compact(
    index: IndexName = "default",
    full: Annotated[
        bool, typer.Option("--full", help="Merge every segment into one, without deleted rows.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Merge the index's segments as ingest does after its commits (similar sizes, a bounded
    count), or all into one with --full. Searches go on meanwhile."""
    import xsearch

    idx = xsearch.open(index)
    generations = idx.compact(full=full)
    segments = idx.status().segments
    if as_json:
        print(json.dumps({"index": index, "merges": len(generations), "segments": segments}))
        return
    merged = f"{len(generations)} merge{'s' if len(generations) != 1 else ''}"
    kept = f"{segments} segment{'' if segments == 1 else 's'}"
    out.print(f"{index}: {merged}, {kept}", highlight=False)


@index_app.command("upgrade")
@handle_errors
def upgrade(index: IndexName = "default") -> None:
    """Record an index written by an older xsearch in the current store format (no data is
    rewritten; the first ingest into it does the same)."""
    import xsearch

    idx = xsearch.open(index)
    done = idx.upgrade()
    state = "upgraded" if done else "already in the current format"
    out.print(f"{index}: {state}, generation {idx.status().generation}", highlight=False)
