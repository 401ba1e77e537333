"""`xsearch serve`: the HTTP JSON API and the web page over one index."""

from __future__ import annotations

import ipaddress
import socket
from typing import Annotated

import typer

from xsearch.cli.common import install_hint
from xsearch.cli.console import err, handle_errors, random_weights_banner
from xsearch.cli.options import Device, Fp16Index, Gpu, IndexName
from xsearch.errors import UsageError

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


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
) -> None:
    """Serve a web page and an HTTP JSON API to search an index (Ctrl+C stops)."""
    import uvicorn

    from xsearch.api import open_index
    from xsearch.server.app import create_app
    from xsearch.store.tables import MODALITIES

    idx = open_index(index, device=device, gpu=gpu, fp16_index=fp16_index)
    if idx.store.manifest.model.get("weights") == "random":
        random_weights_banner(install_hint())
    idx.encoder  # load (and check) the model now, not on the first request  # noqa: B018
    if gpu:  # and place the indexes now: a type the GPU cannot run fails here, in one line
        for modality in MODALITIES:
            idx.store.faiss_index(modality)
    loopback = _is_loopback(host)
    app = create_app(
        idx,
        max_upload_bytes=int(max_upload_mb * 1e6),
        allowed_hosts=(LOOPBACK_NAMES | {host}) if loopback else None,
    )
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    url = f"http://{f'[{host}]' if ':' in host else host}:{bound_port}/"
    if not loopback:
        err.print(
            f"[yellow]warning:[/] listening on {host}: anyone who can reach it can search "
            f"index {idx.name} and read every file it holds.",
            highlight=False,
            soft_wrap=True,
        )
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    try:
        print(f"serving index {idx.name} on {url} (Ctrl+C to stop)", flush=True)
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C once it has shut down: a normal stop
        pass


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port): errors are one line, port 0's actual port can be
    printed, and the printed URL already accepts connections."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as e:
        raise UsageError(f"cannot listen on {host}: {e.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)  # connections queue from now on, before the server loop runs
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock
