"""Issue 17, items 1 and 5: other web pages cannot use the server (loopback is no boundary for
a browser), and bad parameters are a one-line 400, never a 500 or a silent 200."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.helpers.server import media_index
from xsearch.server.app import create_app


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_audioclip):
    base = tmp_path_factory.mktemp("cross-site")
    index = media_index(base, tiny_audioclip)
    uploads = base / "uploads"
    uploads.mkdir()
    with TestClient(create_app(index, upload_dir=uploads), raise_server_exceptions=False) as c:
        yield c, index, uploads


def _an_image_item(index) -> int:
    items = index.store.items.to_pylist()
    return next(i["item_id"] for i in items if i["modality"] == "image")


# What browsers send for a request a page makes: `Sec-Fetch-Site` (Chromium, Firefox, Safari
# 16.4+), and `Origin` on POSTs and cross-origin fetches (every browser).
CROSS_SITE = [
    {"sec-fetch-site": "cross-site"},
    {"sec-fetch-site": "same-site"},  # another port of this host: the same site, not origin
    {"origin": "http://127.0.0.1:9999"},
    {"origin": "null"},  # a sandboxed frame, a file:// page
]
SAME_ORIGIN = [
    {},  # curl, scripts: no browser headers
    {"sec-fetch-site": "same-origin"},
    {"sec-fetch-site": "none"},  # the user typed the address
    {"origin": "http://testserver"},
]


@pytest.mark.parametrize("headers", CROSS_SITE, ids=lambda h: ",".join(h.values()))
def test_other_pages_are_refused_everywhere(served, headers):
    client, index, uploads = served
    item = _an_image_item(index)
    asset = index.store.items_by_id.row(item)["asset_id"]
    for url in (
        "/api/search?text=rain&target=image",
        "/api/search?text=rain&where=(SELECT%20sum(range)%20FROM%20range(10))%20%3C%3E%200",
        f"/media/{asset}",
        f"/thumb/{item}",
        "/api/status",
    ):
        reply = client.get(url, headers=headers)
        assert reply.status_code == 403, (url, reply.status_code)
        assert reply.json() == {"error": "refused: a request from another web page"}
    posted = client.post(
        "/api/search?target=image",
        content=b"hello",
        headers={**headers, "content-type": "text/plain"},
    )
    assert posted.status_code == 403
    assert list(uploads.iterdir()) == []  # refused before anything was read


@pytest.mark.parametrize("headers", SAME_ORIGIN, ids=lambda h: ",".join(h.values()) or "none")
def test_the_page_itself_and_other_clients_are_served(served, headers):
    client, index, _ = served
    reply = client.get("/api/search?text=rain&target=image", headers=headers)
    assert reply.status_code == 200, reply.text
    thumb = client.get(f"/thumb/{_an_image_item(index)}", headers=headers)
    assert thumb.status_code == 200
    assert thumb.headers["cross-origin-resource-policy"] == "same-origin"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("like=99999999999999999999999", "like must be an integer"),
        ("like=-9223372036854775809", "like must be an integer"),
        ("text=rain&min_score=nan", "min_score must be a finite number"),
        ("text=rain&min_score=inf", "min_score must be a finite number"),
        ("text=rain&nprobe=100000000000000000000", "nprobe must be an integer"),
        ("text=rain&k=99999999999999999999", "k must be an integer"),
    ],
)
def test_bad_numbers_are_a_one_line_400(served, query, message):
    client, _, _ = served
    reply = client.get(f"/api/search?{query}")
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["error"] and "\n" not in reply.json()["error"]


def test_a_bad_filter_on_a_post_is_refused_before_the_upload_is_read(served, monkeypatch):
    from xsearch.server import uploads as module

    client, _, uploads = served
    received = []
    real = module.receive

    async def spy(*args, **kwargs):
        received.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(module, "receive", spy)
    reply = client.post(
        "/api/search?target=image&where=no_such_column%20%3D%201",
        content=b"\x89PNG not really",
        headers={"content-type": "image/png"},
    )
    assert reply.status_code == 400
    assert "bad filter" in reply.json()["error"]
    assert received == [] and list(uploads.iterdir()) == []


@pytest.mark.parametrize(
    ("header", "status", "message"),
    [
        ("bytes=abc", 400, "range must be requested"),
        ("bytes=5-2", 400, "start must be less than end"),
        ("items=0-1", 400, "bytes range"),
        ("bytes=999999999-", 416, "Not Satisfiable"),
    ],
)
def test_bad_range_headers_are_json_errors(served, header, status, message):
    client, index, _ = served
    asset = index.store.assets.to_pylist()[0]["asset_id"]
    reply = client.get(f"/media/{asset}", headers={"range": header})
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/json"
    assert message in reply.json()["error"]
    assert reply.headers["x-content-type-options"] == "nosniff"


def test_hits_show_paths_from_the_indexed_folder_unless_asked(served, tmp_path):
    client, index, _ = served
    hits = client.get("/api/search?text=rain&target=audio&k=20").json()["hits"]
    assert hits and all(h["path"].startswith("media/") for h in hits)
    full_app = create_app(index, upload_dir=tmp_path, full_paths=True)
    with TestClient(full_app) as full:
        absolute = full.get("/api/search?text=rain&target=audio&k=20").json()["hits"]
    assert [h["path"] for h in absolute] == [
        index.store.assets_by_id.row(h["asset_id"])["path"] for h in hits
    ]
