"""An index built with MMV (video clips and audio in one space, text in another): every
pairing is scored in its own space, never in both, and videos are embedded as clips."""

from __future__ import annotations

import numpy as np
import pytest

import xsearch
from tests.helpers.cli import run_cli
from tests.helpers.media_tree import make_media
from xsearch.errors import UsageError
from xsearch.search.spaces import in_space, queries_for, space_for
from xsearch.store.store import Store


@pytest.fixture(scope="module")
def mmv_index(tmp_path_factory):
    """The media tree ingested with mmv-tiny (random weights, 8-frame clips at 10 fps)."""
    root = tmp_path_factory.mktemp("mmv")
    media = make_media(root / "media")
    index = xsearch.open("mmv", root / "indexes", create=True, weights="random", model="mmv-tiny")
    report = index.ingest([media], xsearch.api.IngestOptions(workers=0))
    return index, report, root


def _spaces(index):
    va, vat = index.spec.spaces
    return va, vat


def _stored(index, item_id: int) -> np.ndarray:
    return Store.open(index.dir).vectors([item_id])[0]


def test_rows_hold_both_spaces_and_text_only_its_own(mmv_index):
    index, report, _ = mmv_index
    assert report.failed and set(report.items) >= {"image", "audio", "text"}
    va, vat = _spaces(index)
    store = Store.open(index.dir)
    for modality in ("image", "audio", "text"):
        _, rows = store.embeddings(modality)
        assert rows.shape[1] == index.spec.dim == va.width + vat.width
        va_norms = np.linalg.norm(rows[:, va.start : va.stop], axis=1)
        vat_norms = np.linalg.norm(rows[:, vat.start : vat.stop], axis=1)
        np.testing.assert_allclose(vat_norms, 1.0, atol=1e-5)
        np.testing.assert_allclose(va_norms, 0.0 if modality == "text" else 1.0, atol=1e-5)


def test_a_video_is_one_clip_around_its_central_moment(mmv_index):
    index, _, _ = mmv_index
    [clip] = [h for h in index.search(like=0, target="image", k=10) if h.path.endswith("walk.mp4")]
    assert clip.end - clip.start == pytest.approx(0.8)  # 8 frames at 10 fps
    assert clip.start == pytest.approx(1.0 - 0.4)  # centred on the 2 s video's middle


def test_each_pairing_scores_in_its_own_space(mmv_index):
    index, _, root = mmv_index
    va, vat = _spaces(index)
    bark = root / "media" / "dogs" / "bark.wav"
    query = index.embed_queries(audio=[bark])[0]
    text = index.embed_queries(text=["a dog on a walk"])[0]
    for hit in index.search(audio=[bark], target="image", k=3):  # sound -> video: va
        row = _stored(index, hit.item_id)
        want = float(query[va.start : va.stop] @ row[va.start : va.stop])
        assert hit.cosine == pytest.approx(want, abs=1e-5)
    for hit in index.search(text="a dog on a walk", target="image", k=3):  # text: vat
        row = _stored(index, hit.item_id)
        want = float(text[vat.start : vat.stop] @ row[vat.start : vat.stop])
        assert hit.cosine == pytest.approx(want, abs=1e-5)
    for hit in index.search(audio=[bark], target="text", k=3):  # sound -> text: vat
        row = _stored(index, hit.item_id)
        want = float(query[vat.start : vat.stop] @ row[vat.start : vat.stop])
        assert hit.cosine == pytest.approx(want, abs=1e-5)
    # an exact duplicate ranks first with the full score
    assert index.search(audio=[bark], target="audio", k=1)[0].cosine == pytest.approx(1, abs=1e-5)


def test_a_fused_text_and_sound_query_meets_the_video_in_the_text_space(mmv_index):
    index, _, root = mmv_index
    va, vat = _spaces(index)
    bark = root / "media" / "dogs" / "bark.wav"
    rows = index.embed_queries(text=["dog"], audio=[bark])
    assert space_for(index.spec.spaces, rows, "image") == vat  # text has no va part
    assert space_for(index.spec.spaces, rows[1:], "image") == va
    fused = queries_for(index.spec, rows, [1.0, 1.0], ["image", "audio"])
    for modality in ("image", "audio"):
        vector = fused[modality]
        assert not vector[va.start : va.stop].any()
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-6)
    only_vat = in_space(rows, vat)
    assert not only_vat[:, va.start : va.stop].any()


def test_a_query_video_is_embedded_as_its_clip(mmv_index):
    index, _, root = mmv_index
    walk = root / "media" / "dogs" / "walk.mp4"
    va, vat = _spaces(index)
    store = Store.open(index.dir)
    items = [i for i in store.items.to_pylist() if i["asset_id"] == _walk_asset(store)]
    clip, sound = (
        next(i["item_id"] for i in items if i["modality"] == m) for m in ("image", "audio")
    )
    want = _stored(index, clip) + _stored(index, sound)  # its clip and its sound weigh alike
    query = index.embed_queries(video=[walk])[0]
    for space in (va, vat):
        part = want[space.start : space.stop]
        np.testing.assert_allclose(
            query[space.start : space.stop], part / np.linalg.norm(part), atol=1e-5
        )


def _walk_asset(store) -> int:
    return next(a["asset_id"] for a in store.assets.to_pylist() if a["path"].endswith("walk.mp4"))


def test_evaluation_scores_each_pairing_in_its_space(mmv_index):
    from xsearch.eval.retrieval import served_scores

    index, _, _ = mmv_index
    va, vat = _spaces(index)
    store = Store.open(index.dir)
    ids, pictures = store.embeddings("image")
    _, sounds = store.embeddings("audio")
    _, texts = store.embeddings("text")
    for queries, space in ((sounds, va), (texts, vat)):
        got = served_scores(store, "image", queries, ids, pictures, exact=True, spec=index.spec)
        part = slice(space.start, space.stop)
        np.testing.assert_allclose(got, queries[:, part] @ pictures[:, part].T, atol=1e-5)
        served = served_scores(store, "image", queries, ids, pictures, spec=index.spec)
        np.testing.assert_allclose(served, got, atol=1e-5)  # the index scores alike
    result = index.evaluate(pairs=[("audio", "image"), ("image", "audio"), ("text", "image")])
    assert {(r.query, r.result) for r in result.rows} >= {("audio", "image"), ("image", "audio")}


def test_the_command_line_searches_text_in_the_text_space(mmv_index):
    _, _, root = mmv_index
    env = {"XSEARCH_HOME": str(root / "indexes")}
    done = run_cli(
        "query", "--index", "mmv", "--text", "a dog", "--target", "video", "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    assert "walk.mp4" in done.stdout


def test_a_model_without_a_vocabulary_refuses_text_in_one_line(tmp_path):
    from xsearch.models.mmv_encoder import MmvEncoder

    encoder = MmvEncoder("mmv-tiny", None)
    encoder.checkpoint = tmp_path / "converted.pt"  # as if loaded from a checkpoint ...
    encoder._model, encoder._words = object(), None  # ... that carries no word list
    with pytest.raises(UsageError, match="no vocabulary") as caught:
        encoder._tokenizer()
    assert "\n" not in str(caught.value)


def test_any_length_of_sound_embeds(mmv_index):
    index, _, _ = mmv_index
    encoder = index.encoder
    for samples in (0, 1, 2047, 5 * 48_000):
        row = encoder.embed("audio", [np.full(samples, 1000.0, np.float32)])[0]
        assert np.isfinite(row).all() and np.linalg.norm(row) == pytest.approx(np.sqrt(2), abs=1e-5)
