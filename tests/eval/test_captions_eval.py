"""Caption retrieval of an index (xsearch.eval.caption_retrieval through xsearch.api.evaluate)
and of a Clotho-like dataset ingested for it (evaluate_dataset), checked against a brute-force
computation over the stored vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.caption_layouts import write_audiocaps, write_clotho
from tests.helpers.eval_layouts import Planted, build, write_esc50
from xsearch.api import evaluate, evaluate_dataset
from xsearch.errors import ParameterError, UsageError
from xsearch.models.fake import FakeEncoder, fake_spec
from xsearch.store.rebuild import rebuild_indexes
from xsearch.store.store import Store

WIDTH = 32


def brute_force(store: Store) -> dict[str, dict[str, float]]:
    """text:audio and audio:text metrics from the stored vectors, the papers' way: a clip's
    score for a caption is its best window's; ranks by sorting (the vectors are random, so
    there are no ties)."""
    items = store.items.to_pylist()
    asset = {i["item_id"]: i["asset_id"] for i in items}
    text_ids, texts = store.embeddings("text")
    audio_ids, audio = store.embeddings("audio")
    clips = sorted({asset[int(i)] for i in audio_ids})
    windows = texts @ audio.T
    scores = np.stack(
        [windows[:, [asset[int(i)] == c for i in audio_ids]].max(axis=1) for c in clips], axis=1
    )  # (captions, clips)
    text_clip = [asset[int(i)] for i in text_ids]

    def summary(ranks_per_query: list[list[int]]) -> dict[str, float]:
        out = {f"R@{k}": float(np.mean([min(r) < k for r in ranks_per_query])) for k in (1, 5, 10)}
        aps = []
        for ranks in ranks_per_query:
            kept = np.sort([r for r in ranks if r < 10])
            aps.append(np.sum(np.arange(1, len(kept) + 1) / (kept + 1)) / len(ranks))
        out["mAP@10"] = float(np.mean(aps))
        return out

    t2a = []
    for t, clip in enumerate(text_clip):
        order = list(np.argsort(-scores[t]))
        t2a.append([order.index(clips.index(clip))])
    a2t = []
    for a, clip in enumerate(clips):
        order = list(np.argsort(-scores[:, a]))
        a2t.append([order.index(t) for t, c in enumerate(text_clip) if c == clip])
    return {"text:audio": summary(t2a), "audio:text": summary(a2t)}


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture
def captioned(tmp_path) -> Store:
    """8 clips of 1-3 audio windows and 2-5 captions each, random vectors loosely tied to a
    direction per clip (so the metrics are neither 0 nor 1)."""
    rng = np.random.default_rng(3)
    files = []
    for c in range(8):
        centre = rng.standard_normal(WIDTH)
        near = [_unit(centre + 1.2 * rng.standard_normal(WIDTH)) for _ in range(9)]
        files.append(([], {"audio": near[: 1 + c % 3], "text": near[3 : 3 + 2 + c % 4]}))
    return build(tmp_path / "captioned", files, {"audio": WIDTH, "text": WIDTH})


def _metrics(row) -> dict[str, float]:
    return {k: row.metrics[k] for k in ("R@1", "R@5", "R@10", "mAP@10")}


def test_caption_protocol_equals_brute_force(captioned, monkeypatch):
    import xsearch.eval.caption_retrieval as caption_retrieval

    want = brute_force(captioned)
    result = evaluate(Planted(captioned), protocol="captions")
    rows = {(r.query, r.result): r for r in result.rows}
    assert list(rows) == [("text", "audio"), ("audio", "text")]
    for (q, t), row in rows.items():
        assert _metrics(row) == pytest.approx(want[f"{q}:{t}"], abs=1e-12), (q, t)
    text_audio, audio_text = rows[("text", "audio")], rows[("audio", "text")]
    assert text_audio.metrics["queries"] == 28 and text_audio.candidates == 8  # 2+3+4+5 x 2
    assert audio_text.metrics["queries"] == 8 and audio_text.candidates == 28
    assert 0 < text_audio.metrics["R@1"] < 1 and 0 < audio_text.metrics["mAP@10"] < 1
    # scored a few queries at a time, the clips' windows never split between chunks
    monkeypatch.setattr(caption_retrieval, "QUERY_CHUNK", 3)
    chunked = evaluate(Planted(captioned), protocol="captions")
    for row, again in zip(result.rows, chunked.rows):
        assert _metrics(again) == pytest.approx(_metrics(row), abs=1e-12)


def test_caption_result_as_json_and_columns(captioned, tmp_path):
    result = evaluate(Planted(captioned), protocol="captions", pairs="audio:text", curves=True)
    assert result.protocol == "captions" and result.columns == ("R@1", "R@5", "R@10", "mAP@10")
    assert result.map_metric == "mAP@10" and result.zero_shot == {}
    data = json.loads(json.dumps(result.as_dict()))
    assert data["protocol"] == "captions" and data["relevance"] == "own"
    (row,) = data["pairs"]
    assert (row["query"], row["result"]) == ("audio", "text")
    assert {"R@1", "R@5", "R@10", "mAP@10", "queries", "skipped"} <= set(row)
    assert "P@1" not in row and len(row["pr_curve"]["recall"]) == 101
    png = result.write_plot(tmp_path / "pr.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_caption_protocol_on_an_approximate_index(captioned):
    want = brute_force(captioned)
    rebuild_indexes(captioned.dir, "IVF2,Flat")
    index = Planted(Store.open(captioned.dir))
    result = evaluate(index, protocol="captions", compare_exact=True, nprobe=1)
    assert result.exact is not None
    for row in result.exact:
        assert _metrics(row) == pytest.approx(want[f"{row.query}:{row.result}"], abs=1e-12)
    served = {(r.query, r.result): r.metrics["mAP@10"] for r in result.rows}
    assert all(0 <= v <= 1 for v in served.values())


def test_caption_pairings_are_checked(captioned, tmp_path):
    with pytest.raises(ParameterError, match="text:audio and audio:text, not audio:audio"):
        evaluate(Planted(captioned), protocol="captions", pairs="audio:audio")
    with pytest.raises(ParameterError, match="bad pairing"):
        evaluate(Planted(captioned), protocol="captions", pairs="text:video")
    with pytest.raises(ParameterError, match="unknown protocol"):
        evaluate(Planted(captioned), protocol="caption")
    no_audio = build(tmp_path / "texts", [([], {"text": [_unit(np.ones(WIDTH))]})],
                     {"image": WIDTH, "text": WIDTH})  # fmt: skip
    with pytest.raises(ParameterError, match="needs text and audio; there is no audio"):
        evaluate(Planted(no_audio), protocol="captions")


def test_the_window_that_matches_decides(tmp_path):
    """A clip of two windows, one on the caption's direction: best-window scoring ranks the
    clip first, where averaging the windows would not."""
    e = np.eye(WIDTH, dtype=np.float32)
    files = [
        ([], {"audio": [e[0], e[5]], "text": [e[5]]}),  # the matching window is the second
        ([], {"audio": [_unit(0.8 * e[5] + 0.6 * e[6])], "text": [e[1]]}),  # 0.8 > 0.71
        ([], {"audio": [e[2]], "text": [e[2]]}),
    ]
    store = build(tmp_path / "windows", files, {"audio": WIDTH, "text": WIDTH})
    rows = evaluate(Planted(store), protocol="captions", pairs="text:audio").rows
    # captions e5 and e2 find their clip first; e1 scores 0 with all three clips: a tie, so
    # rank 1, 2 or 3 with equal chance
    assert rows[0].metrics["R@1"] == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert rows[0].metrics["mAP@10"] == pytest.approx((1 + (1 + 1 / 2 + 1 / 3) / 3 + 1) / 3)


@pytest.fixture(scope="module")
def fake_audio_text():
    return FakeEncoder(fake_spec(WIDTH, ("audio", "text")))


def test_evaluate_a_clotho_layout_end_to_end(tmp_path, fake_audio_text):
    """Clips of 1 s and 21 s (three 10 s windows), 5 captions each, a torch-free model."""
    layout = write_clotho(tmp_path / "clotho", clips=2)
    write_clotho(tmp_path / "clotho", clips=2, split="validation", seconds=21.0, first=5)
    home = tmp_path / "home"
    result = evaluate_dataset(
        "clotho", layout.root, home=home, encoder=fake_audio_text, workers=0,
        options={"split": "validation"},
    )  # fmt: skip
    assert result.dataset == "clotho" and result.index == "eval-clotho"
    assert result.protocol == "captions" and result.left_out == []
    store = Store.open(home / "eval-clotho")
    assert len(store.item_ids("audio")) == 6 and len(store.item_ids("text")) == 10
    want = brute_force(store)
    rows = {f"{r.query}:{r.result}": r for r in result.rows}
    assert set(rows) == {"text:audio", "audio:text"}
    for name, row in rows.items():
        assert _metrics(row) == pytest.approx(want[name], abs=1e-12), name
    assert rows["text:audio"].metrics["queries"] == 10 and rows["audio:text"].candidates == 10
    assert result.as_dict()["dataset"] == {
        "kind": "clotho", "records": 2, "indexed": 2, "rebuilt": False, "left_out": []
    }  # fmt: skip
    evaluation = evaluate_dataset(  # the default split: the index is rebuilt for it
        "clotho", layout.root, home=home, encoder=fake_audio_text, workers=0
    )
    assert evaluation.build is not None and evaluation.build.rebuilt
    assert Store.open(home / "eval-clotho").item_ids("audio").size == 2


def test_missing_audiocaps_clips_are_left_out_when_asked(tmp_path, fake_audio_text):
    layout = write_audiocaps(tmp_path / "ac", clips=3, missing=2)
    home = tmp_path / "home"
    with pytest.raises(UsageError, match="2 clips it lists have no file"):
        evaluate_dataset("audiocaps", layout.root, home=home, encoder=fake_audio_text)
    assert not (home / "eval-audiocaps").exists()  # refused before any ingest
    result = evaluate_dataset(
        "audiocaps", layout.root, home=home, encoder=fake_audio_text, workers=0,
        options={"skip_missing": True},
    )  # fmt: skip
    assert [why for _, why in result.left_out] == ["no local file"] * 2
    assert result.rows[0].metrics["queries"] == 15  # 3 clips x 5 captions


def test_model_is_the_config_the_encoder_is_loaded_with(tmp_path, monkeypatch):
    import xsearch.models

    layout = write_clotho(tmp_path / "clotho", clips=2)
    asked = {}

    def fake_load(weights=None, config=None, **kwargs):
        asked.update(weights=weights, config=config)
        return FakeEncoder(fake_spec(WIDTH, ("audio", "text")))

    monkeypatch.setattr(xsearch.models, "load_encoder", fake_load)
    home = tmp_path / "home"
    result = evaluate_dataset("clotho", layout.root, home=home, model="laion-clap", workers=0,
                              weights="random")  # fmt: skip
    assert asked == {"weights": "random", "config": "laion-clap"}
    assert [(r.query, r.result) for r in result.rows] == [("text", "audio"), ("audio", "text")]
    with pytest.raises(ParameterError, match="differ"):
        evaluate_dataset("clotho", layout.root, home=home, model="laion-clap", config="audioclip")
    image_text = FakeEncoder(fake_spec(WIDTH, ("image", "text")))
    with pytest.raises(ParameterError, match="no audio"):  # refused before the ingest
        evaluate_dataset("clotho", layout.root, home=tmp_path / "h2", encoder=image_text)
    assert not (tmp_path / "h2" / "eval-clotho").exists()


def test_zero_shot_prompt_reaches_the_text_tower(tmp_path):
    class Recording(FakeEncoder):
        def __init__(self) -> None:
            super().__init__(fake_spec(WIDTH, ("audio", "text")))
            self.texts: list[str] = []

        def embed_text(self, texts):
            self.texts += list(texts)
            return super().embed_text(texts)

    layout = write_esc50(tmp_path / "esc50", classes=2, per_class=1, folds=1)
    encoder = Recording()
    result = evaluate_dataset("esc50", layout.root, home=tmp_path / "home", encoder=encoder,
                              workers=0, prompt="This is a sound of {}.")  # fmt: skip
    assert result.protocol == "labels" and result.zero_shot["audio"]["classes"] == 2
    assert "This is a sound of dog." in encoder.texts
    assert "This is a sound of chirping birds." in encoder.texts
    with pytest.raises(ParameterError, match="must hold"):
        evaluate_dataset("esc50", layout.root, home=tmp_path / "home", encoder=encoder,
                         prompt="no slot")  # fmt: skip
