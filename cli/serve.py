"""`xsearch serve`: the HTTP JSON API and the web page over one index."""

from __future__ import annotations

from typing import Annotated

import typer

from xsearch.cli.common import open_index
from xsearch.cli.console import err, handle_errors
from xsearch.cli.options import Device, Fp16Index, Gpu, IndexName, Weights
from xsearch.errors import UsageError


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
    full_paths: Annotated[
        bool,
        typer.Option(
            "--full-paths",
            help="Show hits' absolute paths (default: from the folder holding every file).",
        ),
    ] = False,
    local_only: Annotated[
        bool,
        typer.Option(
            "--local-only",
            help="No web page or HTTP port: only hold the index so that your `xsearch query` "
            "on this machine answers at once.",
        ),
    ] = False,
) -> None:
    """Serve a web page and an HTTP JSON API to search an index (Ctrl+C stops). Your own
    `xsearch query` on this machine asks it too, over a channel only you can use."""
    from xsearch.api import is_loopback
    from xsearch.api import serve as run_server

    if local_only and (host, port) != ("127.0.0.1", 8765):
        raise UsageError("--host and --port do not apply with --local-only")
    idx = open_index(index, weights=weights, device=device, gpu=gpu, fp16_index=fp16_index)
    if local_only:
        from xsearch.api import serve_resident

        def listening(path: str) -> None:
            message = f"holding index {idx.name} for `xsearch query` on {path} (Ctrl+C to stop)"
            print(message, flush=True)

        serve_resident(idx, on_ready=listening)
        return
    if not is_loopback(host):
        err.print(
            f"[yellow]warning:[/] listening on {host}: anyone who can reach it can search "
            f"index {idx.name} and read every file it holds.",
            highlight=False,
            soft_wrap=True,
        )

    def ready(url: str) -> None:
        print(f"serving index {idx.name} on {url} (Ctrl+C to stop)", flush=True)

    def local(path: str) -> None:
        print(f"`xsearch query` on index {idx.name} asks this server, on {path}", flush=True)

    run_server(
        idx,
        host,
        port,
        max_upload_mb=max_upload_mb,
        on_ready=ready,
        on_local=local,
        full_paths=full_paths,
    )
