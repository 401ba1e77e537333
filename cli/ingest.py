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

from xsearch.cli.common import open_index
from xsearch.cli.console import err, handle_errors, out
from xsearch.cli.options import BatchSize, Config, Device, IndexName, Json, Precision, Weights


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
    precision: Precision = "fp32",
    workers: Annotated[
        int, typer.Option(min=0, help="Decoding processes (0: in-process; not with --ray).")
    ] = 2,
    window: Annotated[
        float | None,
        typer.Option(
            min=1.0,
            help="Seconds per audio window (long audio is cut). Default: the model's clip "
            "length (10 s for AudioCLIP, 7 s for msclap-2023).",
            show_default=False,
        ),
    ] = None,
    frames: Annotated[
        str | None,
        typer.Option(
            help="Frames of a video to embed: central, every:SECONDS (e.g. every:2) or "
            "scenes[:MAX] (the first frame of each shot, at most MAX per video, default 32) or "
            "mean[:N] (N frames spread over the video, averaged into one item, default 10). "
            "Default: the index's, else central.",
            show_default=False,
        ),
    ] = None,
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
    from xsearch.api import IngestOptions

    if "-" in paths:  # listed files pass the same checks as found ones (no FIFO is read)
        paths = [p for p in paths if p != "-"] + [line for line in _stdin_paths()]
    options = IngestOptions(
        window_seconds=window,
        frames=frames,
        workers=workers,
        timeout=timeout,
        memory_mb=memory_mb,
        labels_from_folder=labels is LabelsFrom.folder,
        prune=prune,
    )
    idx = open_index(
        index,
        create=True,
        weights=weights,
        config=config,
        device=device,
        batch_size=batch_size,
        precision=precision,
    )
    progress = _progress() if err.is_terminal and not as_json else None
    ray_on = ray or ray_address is not None
    # Ray prints its workers' troubles to stdout: stderr here, stdout is for the results.
    quiet_stdout = redirect_stdout(sys.stderr) if ray_on else nullcontext()
    with quiet_stdout, progress or nullcontext():
        task = progress.add_task("ingesting", total=None, items=0) if progress else None
        report = idx.ingest(
            paths,
            options,
            on_plan=(lambda n: progress.update(task, total=n)) if progress else None,
            on_file=(lambda p, s, n: progress.update(task, advance=1, items=n))
            if progress
            else None,
            on_skipped=_skipped,
            ray=ray,
            ray_address=ray_address,
            ray_actors=ray_actors,
        )
    if as_json:
        print(json.dumps(report.as_dict() | {"index": index}))
    else:
        _summary(index, report)
    if report.interrupted:  # published, yet not all done: the shell's code for Ctrl-C
        raise typer.Exit(130)


def _stdin_paths() -> list[str]:
    from xsearch.api import read_path_list

    return read_path_list(sys.stdin)


def _skipped(path: Path, exc: OSError) -> None:
    err.print(f"[yellow]skipped:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)


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
        f"{report.seconds:.1f} s"
        + (f" ({report.items_per_second:.1f} items/s)" if report.items else ""),
        highlight=False,
        soft_wrap=True,
    )
    for path, reason in report.failed[:20]:
        err.print(f"[yellow]failed:[/] {path}: {reason}", highlight=False, soft_wrap=True)
    if len(report.failed) > 20:
        err.print(f"... and {len(report.failed) - 20} more (`xsearch status --failures`)")
    for note in ingest_notes(report):
        err.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


def ingest_notes(report) -> list[str]:
    """What the user may want to act on: files skipped for their type, files gone."""
    from xsearch.api import ingest_notes as notes

    return notes(report, prune_option="--prune")
