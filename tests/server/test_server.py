"""`xsearch serve`'s HTTP API: searches (text, uploads, like), files by id with ranges,
thumbnails, hostile requests (path traversal, oversized uploads), errors and concurrency."""

from __future__ import annotations

import builtins
import datetime
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image
from starlette.testclient import TestClient

import xsearch
from tests.helpers.cli import run_cli
from tests.helpers.media_tree import make_media
from tests.helpers.server import serving
from xsearch.ingest.pipeline import IngestOptions, ingest
from xsearch.ingest.scan import find_files
from xsearch.server import uploads
from xsearch.server.app import create_app

LIMIT = 2_000_000  # bytes: the upload limit of the test app


@pytest.fixture(scope="module")
def home(tmp_path_factory, tiny_audioclip) -> Path:
    """Three indexes: `media` (every modality), `pics` (one image), `failed` (no items)."""
    base = tmp_path_factory.mktemp("server")
    media = make_media(base / "media")
    (base / "pics").mkdir()
    shutil.copy(media / "rain" / "sky.png", base / "pics" / "sky.png")
    (base / "bad").mkdir()
    (base / "bad" / "broken.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    for name, folder in (("media", media), ("pics", base / "pics"), ("failed", base / "bad")):
        ingest(find_files([folder]), base / "home" / name, tiny_audioclip, IngestOptions(workers=0))
    return base


@pytest.fixture(scope="module")
def index(home):
    return xsearch.open("media", root=home / "home", device="cpu")


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def app(index, upload_dir):
    return create_app(index, max_upload_bytes=LIMIT, upload_dir=upload_dir)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def live(app):
    with serving(app) as port:
        yield port


def raw_request(port: int, head: str, body: bytes = b"") -> tuple[int, dict, bytes]:
    """Send bytes exactly as given (no client-side URL normalisation); read to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode("latin-1") + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    header, _, content = data.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, content


def get(port: int, target: str) -> tuple[int, dict, bytes]:
    head = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    return raw_request(port, head)


def assert_json_error(response, status: int, needle: str = "") -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert "\n" not in message and "Traceback" not in response.text
    assert needle.lower() in message.lower(), message
    return message


def asset_of(index, name: str) -> dict:
    return next(a for a in index.store.assets.to_pylist() if Path(a["path"]).name == name)


def items_of(index, name: str) -> list[dict]:
    asset = asset_of(index, name)["asset_id"]
    return [i for i in index.store.items.to_pylist() if i["asset_id"] == asset]


# --- the page and status -----------------------------------------------------------------------


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="q"' in page.text and "/static/app.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from the internet
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert client.get("/static/style.css").status_code == 200
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_status(client):
    status = client.get("/api/status").json()
    assert status["index"] == "media" and status["generation"] >= 1
    assert status["items"] == {"image": 2, "audio": 6, "text": 1}
    assert status["assets"] == {"audio": 3, "image": 1, "video": 1, "text": 0}
    assert status["model"]["config"] == "audioclip-tiny"
    assert status["model"]["random_weights"] is True
    assert status["max_upload_bytes"] == LIMIT
    assert [t["value"] for t in status["targets"]] == ["audio", "image", "text", "video", "all"]
    assert {t["label"] for t in status["targets"]} >= {"images", "everything"}


# --- searching ---------------------------------------------------------------------------------


def test_search_by_text_equals_the_api(client, index):
    answer = client.get("/api/search", params={"text": "rain", "target": "audio", "k": 3}).json()
    assert answer["took_ms"] >= 0
    hits = answer["hits"]
    expected = index.search(text="rain", target="audio", k=3)
    assert [h["item_id"] for h in hits] == [h.item_id for h in expected]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    first = hits[0]
    assert first["media_url"] == f"/media/{first['asset_id']}"
    assert first["thumb_url"] == f"/thumb/{first['item_id']}"
    assert first["name"] == Path(first["path"]).name
    assert first["kind"] in ("audio", "video")


def test_search_videos_and_everything(client):
    videos = client.get("/api/search", params={"text": "dog", "target": "video"}).json()["hits"]
    assert [(h["name"], h["kind"]) for h in videos] == [("walk.mp4", "video")]
    assert videos[0]["thumb_url"] and videos[0]["media_url"]
    everything = client.get("/api/search", params={"text": "dog", "target": "all", "k": 20})
    hits = everything.json()["hits"]
    assert len({h["asset_id"] for h in hits}) == len(hits) == 5  # one hit per asset
    assert {h["kind"] for h in hits} == {"audio", "image", "video"}


def test_text_hits_carry_their_text(client):
    hits = client.get("/api/search", params={"text": "dog", "target": "text"}).json()["hits"]
    assert [(h["name"], h["text"], h["kind"]) for h in hits] == [
        ("walk.mp4", "a dog on a walk", "video")
    ]


def post_file(client, path: Path, content_type: str | None, **params):
    headers = {"Content-Type": content_type} if content_type else {}
    return client.post("/api/search", params=params, content=path.read_bytes(), headers=headers)


def test_search_by_uploaded_image(client, home, upload_dir):
    sky = home / "media" / "rain" / "sky.png"
    response = post_file(client, sky, "image/png", target="image", k=2)
    assert response.status_code == 200, response.text
    assert response.json()["hits"][0]["path"] == "media/rain/sky.png"  # not the server's layout
    assert list(upload_dir.iterdir()) == []  # the stored upload is deleted after the search


def test_search_by_uploaded_audio_and_video(client, home, upload_dir):
    bark = home / "media" / "dogs" / "bark.wav"
    hits = post_file(client, bark, "audio/wav", target="audio").json()["hits"]
    assert hits[0]["path"] == "media/dogs/bark.wav"
    walk = home / "media" / "dogs" / "walk.mp4"
    # no Content-Type: `as` says what it is
    response = post_file(client, walk, None, target="image", **{"as": "video"})
    assert response.status_code == 200, response.text
    assert {h["modality"] for h in response.json()["hits"]} == {"image"}
    both = post_file(client, walk, "video/mp4", target="audio", text="dog", k=2)
    assert both.status_code == 200 and len(both.json()["hits"]) == 2
    assert list(upload_dir.iterdir()) == []


def test_search_like_an_item(client, index):
    sky = next(i for i in items_of(index, "sky.png") if i["modality"] == "image")
    hits = client.get("/api/search", params={"like": sky["item_id"], "target": "image"}).json()
    assert hits["hits"][0]["item_id"] == sky["item_id"]
    others = client.get(
        "/api/search", params={"like": sky["item_id"], "target": "image", "exclude_self": "1"}
    ).json()["hits"]
    assert sky["asset_id"] not in {h["asset_id"] for h in others}
    assert_json_error(client.get("/api/search?like=99999"), 400, "no item 99999")
    assert_json_error(client.get("/api/search?like=abc"), 400, "integer")


def test_search_where_and_min_score(client, index):
    hits = client.get(
        "/api/search", params={"text": "storm", "target": "audio", "where": "start >= 10"}
    ).json()["hits"]
    assert hits and all(h["start"] >= 10 for h in hits)
    none = client.get("/api/search", params={"text": "x", "min_score": "1000"}).json()
    assert none["hits"] == []


# --- files by id -------------------------------------------------------------------------------


def test_media_whole_and_ranges(client, index):
    storm = asset_of(index, "storm.wav")
    data = Path(storm["path"]).read_bytes()
    whole = client.get(f"/media/{storm['asset_id']}")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/media/{storm['asset_id']}", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    tail = client.get(f"/media/{storm['asset_id']}", headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == data[-100:]
    video = asset_of(index, "walk.mp4")
    assert client.get(f"/media/{video['asset_id']}").headers["content-type"] == "video/mp4"


def test_media_of_a_changed_file_is_not_served(client, index, home, tmp_path):
    """The server serves the indexed file only: one replaced by other content is refused, of
    another size or of the same (a new modification time), as is a symbolic link in its
    place, even to a file of the same size and time."""
    bark = asset_of(index, "bark.wav")
    path = Path(bark["path"])
    original, st = path.read_bytes(), path.stat()
    elsewhere = tmp_path / "same-size.wav"
    try:
        path.write_bytes(original + b"more")
        assert_json_error(client.get(f"/media/{bark['asset_id']}"), 404, "changed")
        path.write_bytes(original[:-4] + b"XXXX")  # the same size, written now
        assert_json_error(client.get(f"/media/{bark['asset_id']}"), 404, "changed")
        elsewhere.write_bytes(b"secret".ljust(len(original), b"."))
        os.utime(elsewhere, ns=(st.st_atime_ns, st.st_mtime_ns))
        path.unlink()
        path.symlink_to(elsewhere)
        assert_json_error(client.get(f"/media/{bark['asset_id']}"), 404, "changed")
        item = next(i for i in items_of(index, "bark.wav"))
        assert client.get(f"/thumb/{item['item_id']}").status_code == 404
    finally:
        path.unlink(missing_ok=True)
        path.write_bytes(original)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert client.get(f"/media/{bark['asset_id']}").status_code == 200
    os.utime(path)  # touched: a new time, the same bytes (checked by their hash)
    try:
        assert client.get(f"/media/{bark['asset_id']}").status_code == 200
    finally:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_the_checked_file_is_served_even_when_swapped_after_the_check(index, tmp_path):
    """The file is opened once, checked, and streamed from that descriptor: a file renamed
    into its place between the check and the response is not what is sent."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from xsearch.server.catalog import Catalog
    from xsearch.server.media import IndexedFileResponse, open_indexed

    bark = asset_of(index, "bark.wav")
    path = Path(bark["path"])
    original, st = path.read_bytes(), path.stat()
    opened = open_indexed(Catalog(index.store).asset(bark["asset_id"]))
    assert opened is not None
    swap = path.with_name("swap.tmp")
    swap.write_bytes(b"S" * len(original))
    os.replace(swap, path)
    try:
        app = Starlette(routes=[Route("/", lambda r: IndexedFileResponse(opened, "audio/wav"))])
        with TestClient(app) as local:
            assert local.get("/").content == original
            assert opened.fd == -1  # closed once sent
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def jpeg(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content[:3] == b"\xff\xd8\xff"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG"
    return image.convert("RGB")


def test_thumbnails(client, index):
    for item in index.store.items.to_pylist():
        jpeg(client.get(f"/thumb/{item['item_id']}"))
    frame = next(i for i in items_of(index, "walk.mp4") if i["modality"] == "image")
    r, g, b = jpeg(client.get(f"/thumb/{frame['item_id']}")).resize((1, 1)).getpixel((0, 0))
    assert r > g > b  # the sample video's orange sunset, not a grey placeholder
    window = next(i for i in items_of(index, "storm.wav") if i["start"] == 10.0)
    assert jpeg(client.get(f"/thumb/{window['item_id']}")).size == (320, 120)  # a waveform
    sky = next(i for i in items_of(index, "sky.png"))
    r, g, b = jpeg(client.get(f"/thumb/{sky['item_id']}")).resize((1, 1)).getpixel((0, 0))
    assert b > r


@pytest.fixture
def opened(monkeypatch):
    """Every path opened with open(), io.open() or os.open() while the test runs (any
    thread)."""
    seen: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spy(file, *args, **kwargs):
        seen.append(str(file))
        return real_open(file, *args, **kwargs)

    def os_spy(file, *args, **kwargs):
        seen.append(os.fsdecode(file))
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    monkeypatch.setattr(os, "open", os_spy)
    return seen


@pytest.mark.parametrize(
    "target",
    [
        "/media/../../../../etc/passwd",
        "/media/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/media/..%2f..%2fetc%2fpasswd",
        "/media/%2Fetc%2Fpasswd",
        "/media/999999",
        "/media/-1",
        "/media/1e3",
        "/media/",
        "/thumb/abc",
        "/thumb/../../etc/passwd",
        "/thumb/999999",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/static/index.html/../../app.py",
        "/static/__init__.py",
        "/../../../etc/passwd",
        "/etc/passwd",
    ],
)
def test_path_traversal_is_refused_and_opens_nothing(live, opened, target):
    status, headers, body = get(live, target)
    assert status == 404, body
    assert headers["content-type"].startswith("application/json")
    assert "\n" not in json.loads(body)["error"]
    assert not [p for p in opened if "passwd" in p or p.endswith(".py")], opened


def test_the_open_spy_sees_the_files_served(live, opened, index):
    """The control for the test above: serving a file does show up in `opened`."""
    bark = asset_of(index, "bark.wav")
    status, _, body = get(live, f"/media/{bark['asset_id']}")
    seen = list(opened)
    assert status == 200 and body == Path(bark["path"]).read_bytes()
    assert bark["path"] in seen


# --- hostile uploads ---------------------------------------------------------------------------


@pytest.fixture
def stored(monkeypatch):
    """Every temporary file the upload handler creates."""
    made: list[str] = []
    real = uploads.tempfile.mkstemp

    def spy(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        made.append(name)
        return fd, name

    monkeypatch.setattr(uploads.tempfile, "mkstemp", spy)
    return made


def test_declared_oversized_upload_is_refused_before_reading(live, stored, upload_dir):
    head = (
        "POST /api/search?target=audio HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: audio/wav\r\nContent-Length: 100000000000\r\nConnection: close\r\n\r\n"
    )
    began = time.monotonic()
    status, _, body = raw_request(live, head)  # no body is ever sent
    assert time.monotonic() - began < 5
    assert status == 413 and "limit" in json.loads(body)["error"]
    assert stored == [] and list(upload_dir.iterdir()) == []


def test_chunked_upload_over_the_limit_is_refused(client, stored, upload_dir):
    sent = []

    def body():
        for _ in range(LIMIT // 65536 + 20):
            sent.append(1)
            yield b"\0" * 65536

    response = client.post(
        "/api/search?target=audio", content=body(), headers={"Content-Type": "audio/wav"}
    )
    assert_json_error(response, 413, "limit")
    assert len(stored) == 1 and not Path(stored[0]).exists()
    assert list(upload_dir.iterdir()) == []


def test_chunked_upload_over_the_limit_on_a_real_server(live, upload_dir):
    head = (
        "POST /api/search?target=audio HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: audio/wav\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (65536, b"\0" * 65536)
    with socket.create_connection(("127.0.0.1", live), timeout=10) as s:
        s.sendall(head.encode())
        answer = b""
        try:
            for _ in range(LIMIT // 65536 + 2):
                s.sendall(chunk)
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may stop reading once it has answered
        try:
            while part := s.recv(65536):
                answer += part
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    deadline = time.monotonic() + 5
    while list(upload_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(upload_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"not an image at all" * 50, "image/png"),
        (b"RIFF\x00\x00garbage" * 50, "audio/wav"),
        (b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 500, "video/mp4"),
    ],
)
def test_undecodable_upload_is_a_one_line_400(client, content, content_type, upload_dir):
    response = client.post(
        "/api/search?target=image", content=content, headers={"Content-Type": content_type}
    )
    message = assert_json_error(response, 400, "query file")
    assert "xsearch-upload" not in message and str(upload_dir) not in message
    assert list(upload_dir.iterdir()) == []


def test_upload_errors(client):
    assert_json_error(
        client.post("/api/search", content=b"abc", headers={"Content-Type": "text/plain"}),
        400,
        "as=audio|image|video",
    )
    assert_json_error(client.post("/api/search?as=text", content=b"abc"), 400, "unknown as='text'")
    assert_json_error(
        client.post("/api/search", content=b"", headers={"Content-Type": "image/png"}),
        400,
        "empty",
    )


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("text=x&where=nonsense((", "where: bad filter"),
        ("text=x&where=no_such_column > 1", "where: bad filter"),
        ("text=x&k=0", "k must be"),
        ("text=x&k=-3", "k must be"),
        ("text=x&k=ten", "k must be an integer"),
        ("text=x&k=100000", "k must be"),
        ("text=x&target=sound", "unknown target 'sound'"),
        ("text=x&min_score=high", "min_score"),
        ("text=x&nprobe=0", "nprobe"),
        ("text=x&per_file=0", "per_file must be"),
        ("text=x&per_file=many", "per_file must be an integer"),
        ("target=audio", "give a query"),
        ("text=+++", "give a query"),
    ],
)
def test_bad_requests_are_400_json(client, query, needle):
    assert_json_error(client.get(f"/api/search?{query}"), 400, needle)


def test_a_modality_with_no_items_and_an_index_without_items(home):
    pics = create_app(xsearch.open("pics", root=home / "home", device="cpu"))
    with TestClient(pics) as client:
        assert client.get("/api/search?text=x&target=image").status_code == 200
        assert_json_error(client.get("/api/search?text=x&target=audio"), 400, "no audio items")
        assert_json_error(client.get("/api/search?text=x&target=text"), 400, "no text items")
    failed = create_app(xsearch.open("failed", root=home / "home", device="cpu"))
    with TestClient(failed) as client:
        assert client.get("/api/status").json()["items"] == {"image": 0, "audio": 0, "text": 0}
        for target in ("audio", "image", "text"):
            assert_json_error(client.get(f"/api/search?text=x&target={target}"), 400, "no")


def test_unknown_routes_and_methods_are_json(client):
    assert_json_error(client.get("/nothing/here"), 404, "not found")
    assert_json_error(client.delete("/api/search"), 405)


def test_an_unexpected_error_is_500_without_traceback(index, monkeypatch, caplog):
    app = create_app(index)

    def broken(**kwargs):
        raise RuntimeError("secret detail\nsecond line")

    monkeypatch.setattr(index, "search", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/search?text=x")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    assert "secret" not in response.text
    assert any("secret detail" in r.getMessage() or r.exc_info for r in caplog.records)


def test_host_check_refuses_other_names(index):
    app = create_app(index, allowed_hosts={"127.0.0.1", "localhost", "::1"})
    with TestClient(app, base_url="http://evil.example:8765") as client:
        assert_json_error(client.get("/api/status"), 421, "host")
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        assert client.get("/api/status").status_code == 200
    with TestClient(app, base_url="http://[::1]:8765") as client:
        assert client.get("/api/status").status_code == 200


@pytest.mark.slow  # real processes
def test_serve_refuses_an_unknown_or_empty_index(tmp_path):
    result = run_cli("serve", "--index", "nope", env={"XSEARCH_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "no index" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "empty" / "data").mkdir(parents=True)
    result = run_cli("serve", "--index", "empty", env={"XSEARCH_HOME": str(tmp_path)})
    assert result.returncode == 2 and "empty" in result.stderr


@pytest.mark.slow  # a real server process
def test_serve_on_all_interfaces_warns_and_stops_cleanly(home):
    exe = Path(sys.executable).with_name("xsearch")
    env = {**os.environ, "XSEARCH_HOME": str(home / "home")}
    args = ["serve", "--index", "pics", "--host", "0.0.0.0", "--port", "0", "--device", "cpu"]
    process = subprocess.Popen(
        [str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        line = process.stdout.readline()
        port = int(re.search(r"http://0\.0\.0\.0:(\d+)/", line).group(1))
        status = httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=30)
        assert status.json()["index"] == "pics"  # any Host is answered off loopback
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "warning" in stderr and "read every file" in stderr
    assert "random weights" in stderr.lower() and "Traceback" not in stderr


# --- concurrency -------------------------------------------------------------------------------


@pytest.mark.slow  # 64 requests from 16 threads to a real server
@pytest.mark.timeout(300)
def test_concurrent_requests_equal_serial_results(live, home, index):
    base = f"http://127.0.0.1:{live}"
    queries = [
        {"text": "rain", "target": "audio", "k": "5"},
        {"text": "dog", "target": "image", "k": "2"},
        {"text": "a walk", "target": "text"},
        {"text": "storm", "target": "audio", "where": "start >= 10"},
        {"text": "siren", "target": "audio", "k": "3"},
        {"text": "sky", "target": "image"},
    ]
    sky = (home / "media" / "rain" / "sky.png").read_bytes()
    storm = asset_of(index, "storm.wav")["asset_id"]
    storm_bytes = Path(asset_of(index, "storm.wav")["path"]).read_bytes()

    def one(n: int, http: httpx.Client):
        kind = n % 8
        if kind == 6:
            r = http.post(
                "/api/search?target=image&k=2", content=sky, headers={"Content-Type": "image/png"}
            )
            return ("upload", r.status_code, r.json()["hits"])
        if kind == 7:
            r = http.get(f"/media/{storm}", headers={"Range": "bytes=100-4195"})
            return ("media", r.status_code, r.content == storm_bytes[100:4196])
        q = queries[n % len(queries)]
        r = http.get("/api/search", params=q)
        return (json.dumps(q), r.status_code, r.json()["hits"])

    with httpx.Client(base_url=base, timeout=120) as http:
        serial = {}
        for n in range(8):
            key, status, hits = one(n, http)
            assert status in (200, 206)
            serial[key] = hits
        serial.update(
            {json.dumps(q): http.get("/api/search", params=q).json()["hits"] for q in queries}
        )

    def worker(t: int) -> list:
        with httpx.Client(base_url=base, timeout=120) as http:
            return [one(t * 4 + i, http) for i in range(4)]

    with ThreadPoolExecutor(16) as pool:
        results = [r for batch in pool.map(worker, range(16)) for r in batch]
    assert len(results) == 64
    for key, status, value in results:
        if key == "media":
            assert status == 206 and value is True
        else:
            assert status == 200
            assert value == serial[key], key


def one_picture_index(tmp_path: Path, encoder):
    """An index `live` of one picture embedded by `encoder`, opened: (folder, pictures to add,
    encoder, its directory, the opened index)."""
    from xsearch.samples import image_samples

    folder = tmp_path / "media"
    folder.mkdir()
    pictures = list(image_samples((64, 48)).items())
    pictures[0][1].save(folder / pictures[0][0])
    directory = tmp_path / "home" / "live"
    ingest(find_files([folder]), directory, encoder, IngestOptions(workers=0))
    index = xsearch.open("live", root=tmp_path / "home", device="cpu")
    index.use_encoder(encoder)
    return folder, pictures, encoder, directory, index


def test_the_server_follows_new_generations(tmp_path, tiny_audioclip):
    """Ingests while serving: each shows at the next request, also after the writer has
    deleted the generation the server started with."""
    folder, pictures, encoder, directory, index = one_picture_index(tmp_path, tiny_audioclip)
    with TestClient(create_app(index), raise_server_exceptions=False) as c:
        assert c.get("/api/status").json()["generation"] == 1
        for n, (name, picture) in enumerate(pictures[1:4], start=2):
            picture.save(folder / name)
            ingest(find_files([folder]), directory, encoder, IngestOptions(workers=0))
            assert c.get("/api/status").json()["generation"] == n
            hits = c.get("/api/search", params={"text": "x", "target": "image", "k": 10})
            assert hits.status_code == 200, hits.text
            assert name in {h["name"] for h in hits.json()["hits"]}
            newest = next(h for h in hits.json()["hits"] if h["name"] == name)
            assert c.get(newest["thumb_url"]).status_code == 200
            liked = c.get("/api/search", params={"like": newest["item_id"], "target": "image"})
            assert liked.status_code == 200 and liked.json()["hits"][0]["name"] == name
    # files only generation 1 had are gone (its segment lives on in the newer ones)
    assert not (directory / "data" / "ref-image-g1.parquet").exists()


def test_the_server_follows_a_generation_its_index_moved_to_during_a_search(
    tmp_path, tiny_audioclip
):
    """Index.search reopens on its own when its files were deleted under it; the server's
    status, catalog and thumbnails must follow that generation too, not stay behind."""
    folder, pictures, encoder, directory, index = one_picture_index(tmp_path, tiny_audioclip)
    with TestClient(create_app(index), raise_server_exceptions=False) as c:
        assert c.get("/api/status").json()["generation"] == 1
        pictures[1][1].save(folder / pictures[1][0])
        ingest(find_files([folder]), directory, encoder, IngestOptions(workers=0))
        assert index.refresh()  # what a search's retry does, between two requests
        status = c.get("/api/status").json()
        assert status["generation"] == 2 and status["items"]["image"] == 2, status


def test_per_file_caps_the_hits_of_one_file(client):
    every = client.get("/api/search?text=rain&target=audio&k=50").json()["hits"]
    once = client.get("/api/search?text=rain&target=audio&k=50&per_file=1").json()["hits"]
    assets = [h["asset_id"] for h in once]
    assert len(set(assets)) == len(assets) and 0 < len(once) < len(every)


def test_by_file_gives_each_file_once_with_its_moments(client):
    """storm.wav's three windows are one result: the file's rank, its best window first."""
    items = client.get("/api/search?text=rain&target=audio&k=50").json()["hits"]
    files = client.get("/api/search?text=rain&target=audio&k=50&by_file=1&per_file=6").json()
    hits = files["hits"]
    assert len(hits) == len(items)  # every window, grouped
    ranks = [h["rank"] for h in hits]
    assert ranks == sorted(ranks) and max(ranks) == len({h["asset_id"] for h in hits})
    storm = [h for h in hits if h["name"] == "storm.wav"]
    assert len(storm) == 3 and len({h["rank"] for h in storm}) == 1
    assert [h["score"] for h in storm] == sorted((h["score"] for h in storm), reverse=True)
    first = client.get("/api/search?text=rain&target=audio&k=1&by_file=1&per_file=6").json()
    assert {h["rank"] for h in first["hits"]} == {1}


def names_found(client, query: str) -> set[str]:
    response = client.get(f"/api/search?text=rain&target=all&k=50&{query}")
    assert response.status_code == 200, response.text
    return {h["name"] for h in response.json()["hits"]}


def test_facets_filter_by_kind_duration_date_folder_and_label(client, index):
    status = client.get("/api/status").json()["facets"]
    assert status["kinds"] == {"audio": 3, "image": 1, "video": 1}
    assert status["duration"][1] == pytest.approx(25.0, abs=0.1)
    assert ["media/dogs", 2] in status["folders"] and ["media", 5] in status["folders"]
    assert names_found(client, "kind=audio") == {"bark.wav", "drops.wav", "storm.wav"}
    assert names_found(client, "kind=image&kind=video") == {"sky.png", "walk.mp4"}
    assert names_found(client, "min_duration=5") == {"storm.wav"}
    assert names_found(client, "folder=media/dogs") == {"bark.wav", "walk.mp4"}
    assert names_found(client, "folder=media/dogs&kind=audio") == {"bark.wav"}
    assert names_found(client, "label=dog") == {"walk.mp4"}  # from its sidecar
    today = datetime.date.today()
    assert len(names_found(client, f"after={today - datetime.timedelta(days=1)}")) == 5
    assert names_found(client, f"before={today - datetime.timedelta(days=1)}") == set()
    assert len(names_found(client, f"before={today}")) == 5  # the whole day
    assert names_found(client, "kind=audio&where=duration > 5") == {"storm.wav"}


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("kind=movie", "kind"),
        ("min_duration=abc", "min_duration"),
        ("max_duration=inf", "max_duration"),
        ("after=2026-13-01", "YYYY-MM-DD"),
        ("before=yesterday", "YYYY-MM-DD"),
    ],
)
def test_bad_facets_are_one_line_400s(client, query, needle):
    assert_json_error(client.get(f"/api/search?text=rain&{query}"), 400, needle)


def test_an_empty_result_says_why(client):
    cut = client.get("/api/search?text=rain&target=audio&min_score=1000").json()
    n = len(client.get("/api/search?text=rain&target=audio").json()["hits"])
    assert cut["hits"] == [] and f"min score 1000 left out all {n} results" in cut["empty_because"]
    files = client.get("/api/search?text=rain&target=all&kind=audio&min_score=1000").json()
    assert "left out all 3 results" in files["empty_because"]  # three files, seven items
    none = client.get("/api/search?text=rain&target=audio&label=nothing-like-this").json()
    assert none["hits"] == [] and none["empty_because"] == "no item matches the filters"
    assert "empty_because" not in client.get("/api/search?text=rain&target=audio").json()


def test_wave_draws_a_span_of_a_files_sound(client, index):
    storm = asset_of(index, "storm.wav")["asset_id"]
    picture = jpeg(client.get(f"/wave/{storm}?start=0&end=25"))
    assert picture.size == (960, 160)
    sky = asset_of(index, "sky.png")["asset_id"]
    assert_json_error(client.get(f"/wave/{sky}?start=0&end=1"), 404, "no sound")
    for span in ("start=0", "start=5&end=5", "start=-1&end=2", "start=0&end=61"):
        assert_json_error(client.get(f"/wave/{storm}?{span}"), 400, "start < end")
    assert_json_error(client.get(f"/wave/{storm}?start=0&end=nan"), 400, "finite")


def test_hits_carry_the_files_size_and_date(client, index):
    hit = client.get("/api/search?text=rain&target=audio&k=1").json()["hits"][0]
    asset = next(a for a in index.store.assets.to_pylist() if a["asset_id"] == hit["asset_id"])
    assert hit["bytes"] == asset["bytes"] and hit["modified"] == asset["mtime"]
