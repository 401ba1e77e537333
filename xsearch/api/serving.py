"""Serving an index over HTTP: the JSON API and the web page (xsearch/server/), on loopback by
default; and to this user's `xsearch query` over the local channel (xsearch/api/channel.py),
next to HTTP or alone."""

from __future__ import annotations

import ipaddress
import socket
import warnings
from collections.abc import Callable
from contextlib import ExitStack

from xsearch.api.index import Index
from xsearch.api.resident_server import ChannelBusy, serve_locally
from xsearch.errors import ParameterError

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (then the server also checks Host headers)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    index: Index,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    max_upload_mb: float = 100.0,
    on_ready: Callable[[str], None] | None = None,
    local: bool = True,
    on_local: Callable[[str], None] | None = None,
    full_paths: bool = False,
) -> None:
    """Serve `index` until interrupted. The model and (with GPU placement) the FAISS indexes
    are loaded first, so a problem is reported before the address is. `on_ready(url)` is
    called once the socket accepts connections. Any host but loopback lets everyone who can
    reach it search the index and read every indexed file. With `local`, this user's
    `xsearch query` on this machine is answered too, over the local channel (`on_local(path)`
    hears its socket; when another process already answers there, a warning says so). Hits
    show paths from the folder holding every indexed file unless `full_paths`."""
    import uvicorn

    from xsearch.server.app import create_app
    from xsearch.server.connections import server_config

    _load(index)
    loopback = is_loopback(host)
    app = create_app(
        index,
        max_upload_bytes=int(max_upload_mb * 1e6),
        allowed_hosts=(LOOPBACK_NAMES | {host}) if loopback else None,
        full_paths=full_paths,
    )
    with ExitStack() as stack:
        channel = _open_local(stack, index) if local else None
        sock = _bind(host, port)
        url = f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}/"
        config = server_config(app)
        if on_ready:
            on_ready(url)
        if on_local and channel:
            on_local(channel)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C once it has shut down: a normal stop
            pass


def serve_resident(index: Index, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Hold `index` in this process and answer this user's `xsearch query` about it over the
    local channel, with no HTTP port, until interrupted (Ctrl+C or SIGTERM); the socket is
    removed on the way out. The model is loaded first; `on_ready(path)` hears the socket."""
    _load(index)
    with serve_locally(index) as server:
        if on_ready:
            on_ready(str(server.path))
        _wait_for_stop()


def _load(index: Index) -> None:
    """Load what a search needs now, not on the first request: problems show before any
    address is printed."""
    index.store  # an empty index fails first, before the model loads  # noqa: B018
    index.encoder  # load (and check) the model now, not on the first request  # noqa: B018
    if index.placement is not None and index.placement.gpu:
        for modality in index.modalities:  # a type the GPU cannot run fails here, in one line
            index.store.indexes(modality)


def _open_local(stack: ExitStack, index: Index) -> str | None:
    """The local channel beside HTTP, closed with `stack`: its socket's path. Where another
    process already answers there, a warning instead of a failure (queries still find that
    one) and None."""
    try:
        server = stack.enter_context(serve_locally(index))
    except ChannelBusy as e:
        warnings.warn(f"{e}; `xsearch query` will ask that one", stacklevel=3)
        return None
    return str(server.path)


def _wait_for_stop() -> None:
    """Block until Ctrl+C or SIGTERM (the latter handled only while blocked, in the main
    thread), both a normal stop."""
    import signal
    import threading

    stop = threading.Event()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if main else None
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port): errors are one line, port 0's actual port can be
    printed, and the printed URL already accepts connections."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as e:
        raise ParameterError("host", f"cannot listen on {host}: {e.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)  # connections queue from now on, before the server loop runs
    except OSError as e:
        sock.close()
        raise ParameterError("port", f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock
