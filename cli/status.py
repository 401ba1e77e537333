"""`xsearch status` and `xsearch index rebuild`: what an index holds, and re-deriving it."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from xsearch.cli.console import handle_errors, out
from xsearch.cli.options import IndexName, Json

index_app = typer.Typer(help="Maintain an index's FAISS files.", no_args_is_help=True)


def _facts(store) -> dict:
    from xsearch.store.tables import MODALITIES

    items = store.items.column("modality").to_pylist()
    disk = sum(p.stat().st_size for p in store.dir.rglob("*") if p.is_file())
    m = store.manifest
    return {
        "index": store.dir.name,
        "path": str(store.dir),
        "generation": store.generation,
        "assets": store.assets.num_rows,
        "items": {mod: items.count(mod) for mod in MODALITIES},
        "failures": store.failures.num_rows,
        "bytes": disk,
        "model": m.model if m else None,
    }


@handle_errors
def status(
    index: IndexName = "default",
    failures: Annotated[
        bool, typer.Option("--failures", help="List each failed file and its reason.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Show what an index holds: assets, items per modality, generation, size, model."""
    from xsearch.store.store import Store, index_dir

    store = Store.open(index_dir(index))
    facts = _facts(store)
    if failures:
        facts["failed"] = store.failures.select(["path", "reason"]).to_pylist()
    if as_json:
        print(json.dumps(facts))
        return
    items = ", ".join(f"{n} {m}" for m, n in facts["items"].items())
    model = facts["model"] or {}
    out.print(f"[bold]{facts['index']}[/] ({facts['path']})", highlight=False)
    out.print(f"  generation {facts['generation']}, {facts['bytes'] / 1e6:.1f} MB", highlight=False)
    out.print(f"  {facts['assets']} assets; items: {items}", highlight=False)
    out.print(
        f"  model: {model.get('config', '-')}, weights {model.get('weights', '-')}",
        highlight=False,
    )
    out.print(f"  {facts['failures']} failed files", highlight=False)
    for row in facts.get("failed", []):
        out.print(f"    {row['path']}: {row['reason']}", highlight=False, soft_wrap=True)


@index_app.command("rebuild")
@handle_errors
def rebuild(
    index: IndexName = "default",
    factory: Annotated[
        str, typer.Option(help="FAISS index factory string, e.g. Flat, HNSW32, IVF1024,PQ64.")
    ] = "Flat",
) -> None:
    """Rebuild the FAISS indexes from the stored embeddings (no re-embedding)."""
    from xsearch.store.rebuild import rebuild_indexes
    from xsearch.store.store import index_dir

    store = rebuild_indexes(index_dir(index), factory)
    out.print(f"{index}: rebuilt as {factory}, generation {store.generation}", highlight=False)
