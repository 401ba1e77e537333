"""`xsearch demo`: the main job on generated media: ingest a folder, then query it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from xsearch.cli.console import DownloadBar, err, handle_errors, out, random_weights_banner
from xsearch.cli.options import BatchSize, Config, Device, Weights


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
    index: Annotated[
        str, typer.Option("--index", help="The demo's own index (never one it did not make).")
    ] = "demo",
) -> None:
    """Generate sounds, pictures and a video, ingest them into an index, and query it."""
    from xsearch.api import run_demo

    def say(message: str) -> None:
        err.print(message, highlight=False, soft_wrap=True)

    bar = DownloadBar("AudioCLIP full") if err.is_terminal else None
    try:
        report = run_demo(
            folder,
            index,
            weights=weights,
            fetch=fetch,
            config=config,
            device=device,
            batch_size=batch_size,
            on_message=say,
            on_download=bar,
        )
    finally:
        if bar is not None:
            bar.close()
    if report.random_weights:
        random_weights_banner(model=config)
    if report.rebuilt:
        say(f"rebuilt the demo's index {index}: it was built with other weights")
    ingest = report.ingest
    items = ", ".join(f"{n} {m}" for m, n in sorted(ingest.items.items())) or "nothing new"
    out.print(
        f"ingested {folder}/ into index '{index}' ({report.index.dir}): {ingest.added} files "
        f"added, {ingest.unchanged} unchanged; {items}; {ingest.seconds:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
    for kind, query, target, hits in report.results:
        shown = ", ".join(f"{Path(h.path).name} ({h.score:.2f})" for h in hits)
        out.print(f"[bold]{kind} {query!r} -> {target}:[/] {shown}", highlight=False)
    source = "random weights" if report.random_weights else report.weights
    out.print(f"model: {report.config} ({source}) on {report.device}", highlight=False)
    out.print(
        f"try: {command_name()} query --index {index} --text 'a ticking clock' --target audio",
        highlight=False,
    )


def command_name() -> str:
    """How the user can type this command again: `xsearch` when that is on PATH, else the
    path it was started by (e.g. .venv/bin/xsearch)."""
    started = Path(sys.argv[0])
    on_path = shutil.which("xsearch")
    if on_path and Path(on_path).resolve() == started.resolve():
        return "xsearch"
    try:
        return os.path.relpath(started)
    except ValueError:
        return str(started)
