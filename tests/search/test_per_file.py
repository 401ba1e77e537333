"""Hits per file: one frame per video by default for images, `per_file` for any target, and
each video's best moment (with the next ones when asked) for `video`."""

from __future__ import annotations

import numpy as np
import pytest

from xsearch.errors import ParameterError
from xsearch.search.engine import SearchOptions, search
from xsearch.store.store import Changes, Store, Writer

MODEL = {"encoder": "audioclip", "config": "audioclip-tiny", "weights": "random"}
VIDEOS, FRAMES, WINDOWS = 12, 6, 4


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """12 videos, each 6 frames (2 s apart) and 4 audio windows (5 s), random directions."""
    rng = np.random.default_rng(0)
    with Writer(tmp_path_factory.mktemp("per_file") / "idx", MODEL) as writer:
        changes = Changes()
        frame_ids, window_ids = [], []
        for v in range(VIDEOS):
            asset = writer.allocate_asset()
            changes.new_assets.append(
                {"asset_id": asset, "path": f"/m/{v}.mp4", "content_hash": str(v),
                 "kind": "video", "bytes": 1, "mtime": 0.0, "duration": 20.0, "labels": []}
            )  # fmt: skip
            for modality, count, span, ids in (
                ("image", FRAMES, 2.0, frame_ids),
                ("audio", WINDOWS, 5.0, window_ids),
            ):
                for i, item in enumerate(writer.allocate_items(count)):
                    changes.new_items.append(
                        {"item_id": int(item), "asset_id": asset, "modality": modality,
                         "start": span * i, "end": span * (i + 1), "text": None}
                    )  # fmt: skip
                    ids.append(int(item))
        dim = 1024
        changes.add_vectors(
            "image", np.array(frame_ids), unit(rng.standard_normal((len(frame_ids), dim)))
        )
        changes.add_vectors(
            "audio", np.array(window_ids), unit(rng.standard_normal((len(window_ids), dim)))
        )
        return writer.commit(changes)


def query_near(store: Store, modality: str, item_ids: list[int], seed: int = 1) -> np.ndarray:
    """A query close to the mean of these items: they come first, in a known order."""
    ids, vectors = store.embeddings(modality)
    rows = vectors[np.isin(ids, item_ids)]
    noise = np.random.default_rng(seed).standard_normal(rows.shape[1]) * 0.01
    return unit(rows.mean(axis=0) + noise)


def counts(hits) -> dict[int, int]:
    out: dict[int, int] = {}
    for hit in hits:
        out[hit.asset_id] = out.get(hit.asset_id, 0) + 1
    return out


def test_images_give_one_frame_per_video_by_default(store):
    ids, _ = store.embeddings("image")
    one_video = [int(i) for i in ids[:FRAMES]]  # all frames of the first video lead
    query = query_near(store, "image", one_video)
    hits = search(store, query, "image", k=5)
    assert len(hits) == 5 and max(counts(hits).values()) == 1
    assert hits[0].item_id in one_video and hits[0].start is not None
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    three = search(store, query, "image", k=5, options=SearchOptions(per_file=3))
    assert [h.item_id for h in three[:3]] == [
        h.item_id
        for h in search(store, query, "image", k=3, options=SearchOptions(per_file=FRAMES))
    ]
    assert counts(three)[hits[0].asset_id] == 3 and len(three) == 5


def test_audio_windows_all_count_unless_capped(store):
    ids, _ = store.embeddings("audio")
    one_file = [int(i) for i in ids[:WINDOWS]]
    query = query_near(store, "audio", one_file)
    every = search(store, query, "audio", k=6)
    assert sorted(h.item_id for h in every[:WINDOWS]) == sorted(one_file)
    capped = search(store, query, "audio", k=6, options=SearchOptions(per_file=2))
    assert max(counts(capped).values()) == 2 and len(capped) == 6
    # the cap keeps the order of the uncapped ranking, skipping what exceeds it
    uncapped = search(store, query, "audio", k=40)
    seen: dict[int, int] = {}
    want = []
    for hit in uncapped:
        seen[hit.asset_id] = seen.get(hit.asset_id, 0) + 1
        if seen[hit.asset_id] <= 2:
            want.append(hit.item_id)
    assert [h.item_id for h in capped] == want[:6]


def test_video_target_ranks_videos_by_their_best_moment(store):
    ids, _ = store.embeddings("image")
    frame = int(ids[2 * FRAMES + 3])  # the 4th frame (6-8 s) of the third video
    query = query_near(store, "image", [frame])
    hits = search(store, query, "video", k=4)
    assert len(hits) == 4 and max(counts(hits).values()) == 1
    assert hits[0].item_id == frame and (hits[0].start, hits[0].end) == (6.0, 8.0)
    moments = search(store, query, "video", k=4, options=SearchOptions(per_file=3))
    assert len(moments) == 12 and set(counts(moments).values()) == {3}
    assert moments[0].item_id == frame
    first = [h for h in moments if h.asset_id == hits[0].asset_id]
    assert moments[:3] == first  # a video's moments follow its best one
    assert [h.score for h in first] == sorted((h.score for h in first), reverse=True)
    assert [h.asset_id for h in moments[::3]] == [h.asset_id for h in hits]
    assert [h.rank for h in moments] == [r for r in (1, 2, 3, 4) for _ in range(3)]


def test_per_file_must_be_positive(store):
    with pytest.raises(ParameterError, match="per_file"):
        search(store, np.ones(1024, np.float32) / 32, "image", options=SearchOptions(per_file=0))


@pytest.mark.parametrize("modality", ["audio", "image"])
def test_a_modality_by_file_ranks_files_by_their_best_item(store, modality):
    """`by_file`: the `k` best files (not items) of a modality, each with its next best items
    up to `per_file`, in score order, sharing the file's rank."""
    ids, _ = store.embeddings(modality)
    per_asset = WINDOWS if modality == "audio" else FRAMES
    lead = [int(ids[per_asset]), int(ids[per_asset + 1])]  # two items of the second file
    query = query_near(store, modality, lead)
    every = SearchOptions(per_file=per_asset)
    items = search(store, query, modality, k=VIDEOS * per_asset, options=every)
    files = search(store, query, modality, k=3, options=SearchOptions(per_file=3, by_file=True))
    assert set(counts(files).values()) == {3} and len(files) == 9
    # files in the order of their best item; each file's items in score order
    best_files = list(dict.fromkeys(h.asset_id for h in items))[:3]
    assert [h.asset_id for h in files[::3]] == best_files
    for place, asset in enumerate(best_files, 1):
        mine = [h for h in files if h.asset_id == asset]
        assert [h.item_id for h in mine] == [h.item_id for h in items if h.asset_id == asset][:3]
        assert {h.rank for h in mine} == {place}
    assert set(lead) <= {h.item_id for h in files[:3]}
    one_each = search(store, query, modality, k=3, options=SearchOptions(by_file=True))
    assert [h.item_id for h in one_each] == [h.item_id for h in files[::3]]
    assert [h.rank for h in one_each] == [1, 2, 3]
