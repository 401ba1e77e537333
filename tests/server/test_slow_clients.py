"""Issue 17, item 4: a client that stalls its upload, or many uploading at once, cannot hold
the server's connections and temporary files."""

from __future__ import annotations

import socket
import time

import pytest

from tests.helpers.server import media_index, serving
from xsearch.server.app import create_app


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_audioclip):
    return media_index(tmp_path_factory.mktemp("slow"), tiny_audioclip)


def _stalled_upload(port: int) -> socket.socket:
    """Headers and 16 bytes of a chunked body, then nothing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    s.sendall(
        b"POST /api/search?target=image HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n" + b"x" * 16 + b"\r\n"
    )
    return s


def _reply(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and (chunk := s.recv(65536)):
        data += chunk
    return data


def test_a_stalled_upload_is_answered_and_leaves_no_file(index, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    app = create_app(index, upload_dir=uploads, upload_idle_seconds=1.0)
    with serving(app) as port:
        began = time.monotonic()
        with _stalled_upload(port) as s:
            reply = _reply(s)
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert time.monotonic() - began < 8
        assert list(uploads.iterdir()) == []


def test_uploads_beyond_the_cap_are_refused_at_once(index, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    app = create_app(index, upload_dir=uploads, upload_idle_seconds=5.0, uploads_at_once=2)
    with serving(app) as port:
        held = [_stalled_upload(port) for _ in range(2)]
        time.sleep(0.5)  # both are being received
        began = time.monotonic()
        with _stalled_upload(port) as third:
            reply = _reply(third)
        assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
        assert time.monotonic() - began < 2
        for s in held:
            s.close()
