"""Issue 17, item 4: a client that stalls its upload, or many uploading at once, cannot hold
the server's connections and temporary files."""

from __future__ import annotations

import json
import socket
import time
from contextlib import contextmanager

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


@contextmanager
def _connection(index, **options):
    """A socket connected to a real server of `index` (`options`: see server_config)."""
    with (
        serving(create_app(index), **options) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as s,
    ):
        yield s


def _closed_within(s: socket.socket, seconds: float) -> bool:
    """Whether the server closes `s` within `seconds` (without answering a request)."""
    s.settimeout(seconds)
    try:
        return s.recv(65536) == b""
    except TimeoutError:
        return False


@pytest.mark.parametrize("sent", [b"", b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"])
def test_a_connection_without_a_whole_request_head_is_closed(index, sent):
    """Nothing at all, or headers that never end (before: both held for ever)."""
    with _connection(index, head_seconds=1.0) as s:
        s.sendall(sent)
        assert _closed_within(s, 6)


def test_a_slow_request_head_is_closed_even_while_bytes_trickle(index):
    with _connection(index, head_seconds=1.5) as s:
        s.sendall(b"GET /api/status HTTP/1.1\r\n")
        began = time.monotonic()
        closed = False
        while time.monotonic() - began < 6 and not closed:
            try:
                s.sendall(b"X")  # one byte of a header every 0.3 s
            except OSError:
                closed = True
            closed = closed or _closed_within(s, 0.3)
        assert closed
        assert time.monotonic() - began < 5


def test_a_connection_kept_alive_gets_a_new_deadline_per_request(index):
    """A client that asks again within the deadline is answered each time."""
    with _connection(index, head_seconds=1.0) as s:
        for _ in range(3):
            time.sleep(0.6)
            s.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reply = _reply(s)
            assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
            length = int(reply.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = reply.split(b"\r\n\r\n", 1)[1]
            while len(body) < length:
                body += s.recv(65536)


def test_a_malformed_request_is_answered_in_json(index):
    with _connection(index) as s:
        s.sendall(b"GET /api/status HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n")  # no colon
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"error": "Invalid HTTP request received."}
