"""Downloading the weights: resume, redirects, verification and failures, against a loopback
HTTP server that serves a small real checkpoint. Nothing here touches the network."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import torch

from xsearch.errors import DownloadError, UsageError
from xsearch.models import fetch
from xsearch.models.checkpoint import build_model
from xsearch.models.config import get_config
from xsearch.models.registry import Release, model_card
from xsearch.models.weights import RELEASES

FILENAME = RELEASES["full"].filename


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a valid audioclip-tiny checkpoint, built once per session.

    Saved in half precision (32 MB instead of 64): every test moves these bytes several
    times, and the checks look at names, shapes and integrity, not at the dtype.
    """
    torch.manual_seed(0)
    model = build_model(get_config("audioclip-tiny")).half()
    path = tmp_path_factory.mktemp("checkpoint") / "tiny.pt"
    torch.save(model.state_dict(), path)
    return path.read_bytes()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the user's cache."""
    monkeypatch.setenv("XSEARCH_CACHE", str(tmp_path / "cache"))


@dataclass
class Served:
    """What the loopback server serves, and what it was asked."""

    payload: bytes
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)
    statuses: list[int] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _flipped(data: bytes) -> bytes:
    """`data` with 64 bytes inverted in the middle (inside tensor data)."""
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 64]) + data[mid + 64 :]


class Handler(http.server.BaseHTTPRequestHandler):
    """Modes by path: /file, /redirect, /truncate (first answer stops halfway), /corrupt,
    /norange (ignores Range), /missing (404), /stall (never answers), /stall-body (stops
    sending halfway and waits), /page (an HTML page instead of a checkpoint)."""

    served: Served  # set on the subclass made per server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        served = self.served
        served.requests.append((self.path, self.headers.get("Range")))
        first = sum(1 for path, _ in served.requests if path == self.path) == 1
        data = served.payload
        if self.path == "/redirect":
            self._status(302, {"Location": "/file", "Content-Length": "0"})
        elif self.path == "/missing":
            self._status(404, {"Content-Length": "0"})
        elif self.path == "/stall":
            served.release.wait(10)
        elif self.path == "/page":
            self._send(b"<html>captive portal</html>")
        elif self.path == "/corrupt":
            self._send(_flipped(data))
        elif self.path == "/norange":
            self._send(data, ranges=False)
        elif self.path == "/truncate":
            self._send(data, stop_at=len(data) // 2 if first else None)
        elif self.path == "/stall-body":
            self._send(data, stop_at=len(data) // 2, stall=True)
        else:
            self._send(data)

    def _status(self, code: int, headers: dict[str, str]) -> None:
        self.served.statuses.append(code)
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send(
        self, data: bytes, *, ranges: bool = True, stop_at: int | None = None, stall: bool = False
    ) -> None:
        start = 0
        header = self.headers.get("Range") if ranges else None
        if header:
            start = int(re.fullmatch(r"bytes=(\d+)-", header)[1])
            if start >= len(data):
                self._status(416, {"Content-Range": f"bytes */{len(data)}", "Content-Length": "0"})
                return
            self._status(
                206,
                {
                    "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}",
                    "Content-Length": str(len(data) - start),
                },
            )
        else:
            self._status(200, {"Content-Length": str(len(data))})
        body = memoryview(data)[start : stop_at if stop_at is not None else len(data)]
        self.wfile.write(body)
        if stall:
            self.served.release.wait(10)
        # Returning closes the connection (HTTP/1.0): a short body looks like a dropped one.


@pytest.fixture
def server(checkpoint: bytes) -> Iterator[Served]:
    served = Served(checkpoint)
    handler = type("BoundHandler", (Handler,), {"served": served})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    served.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served
    served.release.set()
    httpd.shutdown()
    httpd.server_close()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _assert_installed(result: fetch.FetchResult, dest: Path, payload: bytes) -> None:
    """`dest` holds exactly `payload`, with a matching sha256 sidecar and no part left."""
    installed = dest.read_bytes()
    assert installed == payload
    digest = _sha256(installed)
    assert (result.path, result.size, result.sha256) == (dest, len(payload), digest)
    sidecar = dest.with_name(dest.name + ".sha256")
    assert sidecar.read_text() == f"{digest}  {dest.name}\n"
    assert not fetch.part_path(dest).exists()


def _left_nothing(dest: Path) -> None:
    assert not dest.exists()
    assert not fetch.part_path(dest).exists()
    assert not dest.with_name(dest.name + ".sha256").exists()


# --- success paths --------------------------------------------------------------------------


def test_fetch_installs_verified_file_and_sidecar(server: Served, tmp_path: Path) -> None:
    result = fetch.fetch_weights("full", tmp_path, url=server.url("/file"))
    _assert_installed(result, tmp_path / FILENAME, server.payload)
    assert result.downloaded is True
    assert result.matches_release is False  # not the official file: a flag, not an error
    assert server.requests == [("/file", None)]


def test_default_destination_is_the_weights_cache(server: Served, tmp_path: Path) -> None:
    result = fetch.fetch_weights(url=server.url("/file"))
    assert result.path == tmp_path / "cache" / "weights" / FILENAME
    assert result.path.read_bytes() == server.payload


def test_follows_redirects_and_keeps_range(server: Served, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    third = len(server.payload) // 3
    fetch.part_path(dest).write_bytes(server.payload[:third])
    result = fetch.fetch_weights("full", tmp_path, url=server.url("/redirect"))
    _assert_installed(result, dest, server.payload)
    assert server.requests == [("/redirect", f"bytes={third}-"), ("/file", f"bytes={third}-")]
    assert server.statuses == [302, 206]


def test_dropped_connection_is_resumed_with_range(server: Served, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    half = len(server.payload) // 2
    url = server.url("/truncate")
    with pytest.raises(DownloadError, match=rf"closed after {half} of {len(server.payload)}"):
        fetch.fetch_weights("full", tmp_path, url=url)
    assert not dest.exists()
    assert fetch.part_path(dest).read_bytes() == server.payload[:half]

    result = fetch.fetch_weights("full", tmp_path, url=url)
    _assert_installed(result, dest, server.payload)
    assert server.requests == [("/truncate", None), ("/truncate", f"bytes={half}-")]
    assert server.statuses == [200, 206]


def test_complete_part_is_verified_after_416(server: Served, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    fetch.part_path(dest).write_bytes(server.payload)
    result = fetch.fetch_weights("full", tmp_path, url=server.url("/file"))
    _assert_installed(result, dest, server.payload)
    assert server.requests == [("/file", f"bytes={len(server.payload)}-")]
    assert server.statuses == [416]


def test_part_longer_than_file_starts_over(server: Served, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    fetch.part_path(dest).write_bytes(server.payload + b"junk")
    result = fetch.fetch_weights("full", tmp_path, url=server.url("/file"))
    _assert_installed(result, dest, server.payload)
    assert server.statuses == [416, 200]
    assert server.requests[1] == ("/file", None)


def test_server_ignoring_range_starts_over(server: Served, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    fetch.part_path(dest).write_bytes(b"\0" * 1000)  # not a prefix of the file
    result = fetch.fetch_weights("full", tmp_path, url=server.url("/norange"))
    _assert_installed(result, dest, server.payload)
    assert server.requests == [("/norange", "bytes=1000-")]
    assert server.statuses == [200]


def test_existing_valid_file_is_not_downloaded(
    server: Served, tmp_path: Path, checkpoint: bytes
) -> None:
    dest = tmp_path / FILENAME
    dest.write_bytes(checkpoint)
    result = fetch.fetch_weights("full", tmp_path, url=server.url("/file"))
    _assert_installed(result, dest, checkpoint)
    assert result.downloaded is False
    assert server.requests == []


def test_existing_invalid_file_is_replaced(server: Served, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    dest.write_bytes(b"not a checkpoint")
    result = fetch.fetch_weights("full", tmp_path, url=server.url("/file"))
    _assert_installed(result, dest, server.payload)
    assert result.downloaded is True
    assert len(server.requests) == 1


def test_matches_release_when_digest_is_the_official_one(
    server: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = Release("full", "tiny.pt", "unused", len(server.payload), _sha256(server.payload))
    _publish(monkeypatch, release)
    result = fetch.fetch_weights("full", tmp_path, url=server.url("/file"))
    assert result.path == tmp_path / "tiny.pt"
    assert result.matches_release is True


def test_progress_reports_every_byte_and_nothing_without_a_listener(
    server: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[tuple[int, int | None]] = []
    fetch.download(
        server.url("/file"), tmp_path / "a" / FILENAME, progress=lambda *a: seen.append(a)
    )
    assert seen[-1] == (len(server.payload), len(server.payload))
    fetch.download(server.url("/file"), tmp_path / "b" / FILENAME)
    assert capsys.readouterr() == ("", "")  # the library draws nothing: the shells do


# --- failures -------------------------------------------------------------------------------


def test_the_public_fetch_reports_progress_to_a_function(server: Served, tmp_path: Path) -> None:
    from xsearch.api import fetch_weights

    seen: list[tuple[int, int | None]] = []
    result = fetch_weights(
        "full", tmp_path, url=server.url("/file"), progress=lambda *a: seen.append(a)
    )
    size = len(server.payload)
    assert result.path == tmp_path / FILENAME and result.downloaded
    assert seen[0] == (0, size) and seen[-1] == (size, size)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    seen.clear()
    again = fetch_weights(
        "full", tmp_path, url=server.url("/file"), progress=lambda *a: seen.append(a)
    )
    assert not again.downloaded and seen == []  # nothing downloaded, nothing reported


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/corrupt", r"bad CRC-32"),  # torch.load alone would accept these bytes
        ("/page", r"not a PyTorch checkpoint \(it looks like an HTML page"),
    ],
)
def test_bad_content_fails_verification_and_leaves_nothing(
    server: Served, tmp_path: Path, path: str, reason: str
) -> None:
    with pytest.raises(DownloadError, match=rf"failed verification: .*{reason}.*partial file was"):
        fetch.fetch_weights("full", tmp_path, url=server.url(path))
    _left_nothing(tmp_path / FILENAME)


def test_wrong_architecture_fails_verification(server: Served, tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    server.payload = other.read_bytes()
    with pytest.raises(DownloadError, match=r"failed verification: .*does not match"):
        fetch.fetch_weights("full", tmp_path, url=server.url("/file"))
    _left_nothing(tmp_path / FILENAME)


def test_wrong_size_is_refused_before_downloading(server: Served, tmp_path: Path) -> None:
    size = len(server.payload)
    with pytest.raises(DownloadError, match=rf"offers {size} bytes, expected {size + 1}"):
        fetch.fetch_weights("full", tmp_path, url=server.url("/file"), expected_size=size + 1)
    _left_nothing(tmp_path / FILENAME)


def test_official_url_is_held_to_the_release_size(
    server: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size, url = len(server.payload), server.url("/file")
    _publish(monkeypatch, Release("full", FILENAME, url, size - 1, "0" * 64))
    with pytest.raises(DownloadError, match=rf"offers {size} bytes, expected {size - 1}"):
        fetch.fetch_weights("full", tmp_path)

    _publish(monkeypatch, Release("full", FILENAME, url, size, "0" * 64))
    result = fetch.fetch_weights("full", tmp_path)
    _assert_installed(result, tmp_path / FILENAME, server.payload)


def test_http_error_names_url_and_status(server: Served, tmp_path: Path) -> None:
    url = server.url("/missing")
    with pytest.raises(DownloadError, match=rf"^{re.escape(url)}: HTTP 404 Not Found$"):
        fetch.fetch_weights("full", tmp_path, url=url)
    _left_nothing(tmp_path / FILENAME)


def test_silent_server_times_out(server: Served, tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"/stall: timed out$"):
        fetch.fetch_weights("full", tmp_path, url=server.url("/stall"), timeout=0.5)
    assert time.monotonic() - start < 5
    _left_nothing(tmp_path / FILENAME)


def test_stall_mid_body_times_out_and_keeps_the_part(server: Served, tmp_path: Path) -> None:
    dest = tmp_path / FILENAME
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"timed out; \d+ bytes kept in .*resume$") as err:
        fetch.fetch_weights("full", tmp_path, url=server.url("/stall-body"), timeout=0.5)
    assert time.monotonic() - start < 5
    assert not dest.exists()
    kept = fetch.part_path(dest).read_bytes()
    # Whole chunks reach the part; the chunk being read when the timeout hit is lost.
    assert f" {len(kept)} bytes kept" in str(err.value)
    assert len(server.payload) // 2 - (1 << 20) < len(kept) <= len(server.payload) // 2
    assert kept == server.payload[: len(kept)]


def test_offline_fails_fast(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/file"
    start = time.monotonic()
    with pytest.raises(DownloadError, match=rf"^{re.escape(url)}: Connection refused$"):
        fetch.fetch_weights("full", tmp_path, url=url, timeout=0.5)
    assert time.monotonic() - start < 5


def test_unknown_variant_lists_the_variants(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"has no weights 'huge'; known: full, partial"):
        fetch.fetch_weights("huge", tmp_path, url="http://127.0.0.1:9/never")


def _publish(monkeypatch: pytest.MonkeyPatch, release: Release) -> None:
    """Make `release` AudioCLIP's published "full" checkpoint, for `fetch` only."""
    card = replace(model_card("audioclip"), releases=(release,))
    monkeypatch.setattr(fetch, "model_card", lambda name: card)
