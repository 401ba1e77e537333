"""`xsearch serve`: the HTTP JSON API and the web page over one index."""

from __future__ import annotations

from typing import Annotated

import typer

from xsearch.cli.common import open_index
from xsearch.cli.console import err, handle_errors
from xsearch.cli.options import Device, Fp16Index, Gpu, IndexName, Weights


@handle_errors
def serve(
    index: IndexName = "default",
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. Loopback by default; any other address lets the "
            "network search the index and read every indexed file."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8765,
    device: Device = "auto",
    gpu: Gpu = False,
    fp16_index: Fp16Index = False,
    max_upload_mb: Annotated[
        float, typer.Option(min=0.001, help="Largest query file accepted, in MB.")
    ] = 100.0,
    weights: Weights = None,
) -> None:
    """Serve a web page and an HTTP JSON API to search an index (Ctrl+C stops)."""
    from xsearch.api import is_loopback
    from xsearch.api import serve as run_server

    idx = open_index(index, weights=weights, device=device, gpu=gpu, fp16_index=fp16_index)
    if not is_loopback(host):
        err.print(
            f"[yellow]warning:[/] listening on {host}: anyone who can reach it can search "
            f"index {idx.name} and read every file it holds.",
            highlight=False,
            soft_wrap=True,
        )

    def ready(url: str) -> None:
        print(f"serving index {idx.name} on {url} (Ctrl+C to stop)", flush=True)

    run_server(idx, host, port, max_upload_mb=max_upload_mb, on_ready=ready)
