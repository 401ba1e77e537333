"""`xsearch ingest`: bring an index up to date with folders of media."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext, redirect_stdout
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from xsearch.cli.common import open_encoder
from xsearch.cli.console import err, handle_errors, out
from xsearch.cli.options import BatchSize, Config, Device, IndexName, Json, Weights


class LabelsFrom(str, Enum):
    folder = "folder"


@handle_errors
def ingest(
    paths: Annotated[
        list[str], typer.Argument(help="Folders or files; '-' reads a list of paths from stdin.")
    ],
    index: IndexName = "default",
    weights: Weights = None,
    config: Config = None,
    device: Device = "auto",
    batch_size: BatchSize = 16,
    workers: Annotated[
        int, typer.Option(min=0, help="Decoding processes (0: in-process; not with --ray).")
    ] = 2,
    window: Annotated[
        float, typer.Option(min=1.0, help="Seconds per audio window (long audio is cut).")
    ] = 10.0,
    labels: Annotated[
        LabelsFrom | None, typer.Option(help="Also label each file with its folder's name.")
    ] = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="Remove indexed files that no longer exist.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=1.0, help="Seconds a file may take to decode.")
    ] = 60.0,
    memory_mb: Annotated[
        int, typer.Option(min=64, help="Memory limit of each decoding process, MB.")
    ] = 2048,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Decode and embed on Ray: a local instance, or the cluster of --ray-address.",
        ),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="The Ray cluster to join (HOST:PORT, or 'auto'); implies --ray.",
            show_default=False,
        ),
    ] = None,
    ray_actors: Annotated[
        int | None,
        typer.Option(
            "--ray-actors",
            min=1,
            help="Embedding actors on Ray (default: one per GPU, else one).",
            show_default=False,
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Embed new and changed files into an index (incremental; bad files are skipped)."""
    from xsearch.errors import UsageError
    from xsearch.ingest.pipeline import IngestOptions
    from xsearch.ingest.pipeline import ingest as run_ingest
    from xsearch.ingest.scan import find_files, read_file_list
    from xsearch.store.lock import WriterLock
    from xsearch.store.store import LOCK, index_dir

    target = index_dir(index)
    roots = [Path(p).expanduser() for p in paths if p != "-"]
    for root in roots:
        if not root.exists():
            raise UsageError(f"{root}: no such file or folder")

    def skipped(path: Path, exc: OSError) -> None:
        err.print(f"[yellow]skipped:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)

    if "-" in paths:  # listed files pass the same checks as found ones (no FIFO is read)
        roots += [p for p in read_file_list(sys.stdin) if p not in roots]
    files = list(find_files(roots, on_error=skipped)) if roots else []
    backend = None
    if ray or ray_address:
        from xsearch.ingest.ray_backend import RayBackend, import_ray, starts_local

        import_ray(starts_local(ray_address))  # before anything slow: is it installed?
        backend = RayBackend(ray_address, actors=ray_actors, device=device)
        device = "cpu"  # this process only plans and commits; the actors embed
    elif ray_actors is not None:
        raise UsageError("--ray-actors needs --ray (or --ray-address)")
    WriterLock(target / LOCK).check()  # a locked index fails now, not after the model loads
    encoder = open_encoder(weights, config, device, batch_size)
    options = IngestOptions(
        window_seconds=window,
        workers=workers,
        timeout=timeout,
        memory_mb=memory_mb,
        labels_from_folder=labels is LabelsFrom.folder,
        prune=prune,
    )
    show = err.is_terminal and not as_json
    progress = _progress() if show else None
    # Ray starts when first needed, and prints its workers' troubles to stdout: stderr here.
    quiet_stdout = redirect_stdout(sys.stderr) if backend else nullcontext()
    with quiet_stdout, backend or nullcontext(), progress or nullcontext():
        task = progress.add_task("ingesting", total=None, items=0) if progress else None
        report = run_ingest(
            files,
            target,
            encoder,
            options,
            on_plan=(lambda n: progress.update(task, total=n)) if progress else None,
            on_file=(lambda p, s, n: progress.update(task, advance=1, items=n))
            if progress
            else None,
            backend=backend,
        )
    if as_json:
        print(json.dumps(report.as_dict() | {"index": index}))
        return
    _summary(index, report)


def _items_column():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class ItemsColumn(ProgressColumn):
        """Items embedded so far and their rate."""

        def render(self, task) -> Text:
            items = task.fields.get("items", 0)
            rate = items / task.elapsed if task.elapsed else 0.0
            return Text(f"{items} items, {rate:.1f} items/s")

    return ItemsColumn()


def _progress():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        _items_column(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


def _summary(index: str, report) -> None:
    items = ", ".join(f"{n} {m}" for m, n in sorted(report.items.items())) or "no new items"
    out.print(
        f"{index}: generation {report.generation}; {report.files} files: {report.added} added, "
        f"{report.changed} changed, {report.renamed} renamed, {report.unchanged} unchanged, "
        f"{report.removed} removed, {len(report.failed)} failed; {items}; "
        f"{report.seconds:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
    for path, reason in report.failed[:20]:
        err.print(f"[yellow]failed:[/] {path}: {reason}", highlight=False, soft_wrap=True)
    if len(report.failed) > 20:
        err.print(f"... and {len(report.failed) - 20} more (`xsearch status --failures`)")
