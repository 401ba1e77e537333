"""Shared test helpers (server)."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager


@contextmanager
def serving(app, **options):
    """A real uvicorn server on a free loopback port, in a thread, configured as `xsearch
    serve` configures it (`options`: see server_config); yields its port."""
    import uvicorn

    from xsearch.server.connections import server_config

    server = uvicorn.Server(server_config(app, **options))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def media_index(base, encoder):
    """The test media tree (tests/helpers/media_tree.py) ingested under `base`, opened with
    `encoder` for queries."""
    import xsearch
    from tests.helpers.media_tree import make_media
    from xsearch.ingest.pipeline import IngestOptions, ingest
    from xsearch.ingest.scan import find_files

    media = make_media(base / "media")
    ingest(find_files([media]), base / "home" / "media", encoder, IngestOptions(workers=0))
    index = xsearch.open("media", root=base / "home", device="cpu")
    index.use_encoder(encoder)
    return index
