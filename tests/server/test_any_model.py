"""The server over indexes of other widths and modality sets (tests.helpers.fakes.FAKE_SPECS):
`/api/status` and the page's targets follow the model, searches of every kind work, and a
target or a query the model lacks is a one-line 400."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.helpers.fakes import FAKE_SPECS, MEDIA_ITEMS, TARGETS, item_of, lacking, media_of
from xsearch.server.app import create_app

SHAPES = list(FAKE_SPECS)


@pytest.fixture(params=SHAPES)
def served(request, fake_media_index, tmp_path):
    """(the model's shape, the index, a client of the app serving it)."""
    index = fake_media_index(request.param)
    app = create_app(index, upload_dir=tmp_path)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield request.param, index, client


def one_line_400(response, needle: str) -> str:
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert "\n" not in message and needle in message, message
    return message


def test_status_follows_the_model(served):
    shape, _, client = served
    spec = FAKE_SPECS[shape]
    status = client.get("/api/status").json()
    assert status["items"] == {m: MEDIA_ITEMS[m] for m in spec.modalities}
    assert [t["value"] for t in status["targets"]] == list(TARGETS[shape])
    assert status["model"] == {"encoder": "fake", "config": spec.config, "random_weights": True}


def test_searches_by_item_upload_text_and_every_target(served):
    shape, index, client = served
    spec = FAKE_SPECS[shape]
    bark = item_of(index, "bark.wav", "audio")
    liked = client.get("/api/search", params={"like": bark, "target": "audio"})
    assert liked.status_code == 200, liked.text
    assert liked.json()["hits"][0]["item_id"] == bark
    # an uploaded sound is decoded at the model's rate, as ingest decoded it: it finds itself
    media = media_of(index)
    upload = client.post(
        "/api/search",
        params={"target": "audio", "k": 3},
        content=(media / "dogs" / "bark.wav").read_bytes(),
        headers={"Content-Type": "audio/wav"},
    )
    assert upload.status_code == 200, upload.text
    assert upload.json()["hits"][0]["name"] == "bark.wav"
    assert upload.json()["hits"][0]["cosine"] == pytest.approx(1.0, abs=1e-5)
    if "text" in spec.modalities:
        texts = client.get("/api/search", params={"text": "a dog on a walk", "target": "text"})
        assert texts.json()["hits"][0]["text"] == "a dog on a walk"
    for target in TARGETS[shape]:
        response = client.get("/api/search", params={"like": bark, "target": target, "k": 20})
        assert response.status_code == 200, (target, response.text)
        hits = response.json()["hits"]
        assert hits, target
        if target in spec.modalities:
            assert {h["modality"] for h in hits} == {target}
        if target == "video":
            assert [h["name"] for h in hits] == ["walk.mp4"]
        if target == "all":
            assert len({h["asset_id"] for h in hits}) == len(hits)
            assert client.get(hits[0]["media_url"]).status_code == 200


def test_a_target_or_query_the_model_lacks_is_a_one_line_400(served):
    shape, index, client = served
    spec = FAKE_SPECS[shape]
    bark = item_of(index, "bark.wav", "audio")
    for target in lacking(spec):
        one_line_400(client.get("/api/search", params={"like": bark, "target": target}), "target")
    if "text" not in spec.modalities:
        one_line_400(client.get("/api/search", params={"text": "rain", "target": "audio"}),
                     f"embeds {', '.join(spec.modalities)}, not text")  # fmt: skip
    if "image" not in spec.modalities:
        sky = media_of(index) / "rain" / "sky.png"
        response = client.post(
            "/api/search",
            params={"target": "audio"},
            content=sky.read_bytes(),
            headers={"Content-Type": "image/png"},
        )
        one_line_400(response, f"embeds {', '.join(spec.modalities)}, not image")
