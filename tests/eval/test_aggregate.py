"""Evaluation by file (`aggregate`): a video's frames and a recording's windows scored together,
as query and as candidate, beside the paper's central item."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

import xsearch.eval.retrieval as retrieval
from tests.helpers.eval_layouts import CLASSES, DIRECTIONS, Planted, build
from tests.helpers.store import MODEL
from xsearch.api import evaluate
from xsearch.errors import ParameterError
from xsearch.eval.metrics import retrieval_metrics
from xsearch.eval.retrieval import Evaluation, central_item
from xsearch.store.rebuild import rebuild_indexes
from xsearch.store.store import Changes, Store, Writer

DIM = 1024
DURATION = 10.0
FRAMES = 5  # 2 s each: the middle, 5 s, is in frame 2
WINDOWS = 4  # 2.5 s each: the middle is the boundary of windows 1 and 2, so window 1
CENTRAL_FRAME, CENTRAL_WINDOW = 2, 1


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def write_videos(directory, files) -> Store:
    """files: [(labels, {modality: [vector, ...]})], each a video of DURATION seconds whose
    items of a modality split it into equal spans, in order."""
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        for n, (labels, items) in enumerate(files):
            asset = writer.allocate_asset()
            changes.new_assets.append(
                dict(asset_id=asset, path=f"/m/{n}.mp4", content_hash=str(n), kind="video",
                     bytes=1, mtime=0.0, duration=DURATION, labels=list(labels))
            )  # fmt: skip
            for modality, vectors in items.items():
                ids = writer.allocate_items(len(vectors))
                span = DURATION / len(vectors)
                for k, item in enumerate(ids):
                    changes.new_items.append(
                        dict(item_id=int(item), asset_id=asset, modality=modality,
                             start=k * span, end=(k + 1) * span, text=None)
                    )  # fmt: skip
                changes.add_vectors(modality, ids, unit(np.stack(vectors)))
        writer.commit(changes)
    return Store.open(directory)


def planted_videos(directory, where: str) -> Store:
    """4 videos per class; one frame and one window of each carries its class's direction
    (the first or last one, or the central one with `where="centre"`), the others are noise."""
    rng = np.random.default_rng(7)
    files = []
    for c in CLASSES:
        for n in range(4):
            items = {}
            for modality, count, central in (
                ("image", FRAMES, CENTRAL_FRAME),
                ("audio", WINDOWS, CENTRAL_WINDOW),
            ):
                vectors = list(rng.standard_normal((count, DIM)))
                at = central if where == "centre" else (0 if n % 2 else count - 1)
                vectors[at] = DIRECTIONS[c] + 0.05 * rng.standard_normal(DIM)
                items[modality] = vectors
            files.append(([c], items))
    return write_videos(directory, files)


PAIRS = [("text", "image"), ("image", "image"), ("audio", "audio"), ("audio", "image")]


def by_aggregate(store: Store, aggregate: str) -> dict[tuple[str, str], dict]:
    results = Evaluation(Planted(store), aggregate=aggregate).pairs(PAIRS)
    return {(r.query, r.result): r.metrics for r in results}


def test_aggregation_finds_off_centre_content_the_central_item_misses(tmp_path):
    store = planted_videos(tmp_path / "off", "off-centre")
    central, mean, best = (by_aggregate(store, a) for a in ("central", "mean", "max"))
    for pair in PAIRS:
        assert central[pair]["queries"] == (3 if pair[0] == "text" else 12)  # files, not items
        assert central[pair]["mAP"] < 0.7, pair  # noise: about chance
        for aggregated in (mean, best):
            assert aggregated[pair]["mAP"] > central[pair]["mAP"] + 0.3, pair
            assert aggregated[pair]["R@1"] > central[pair]["R@1"], pair
        assert best[pair]["P@1"] == 1.0 and best[pair]["mAP"] == 1.0, pair


def test_the_central_item_is_the_one_in_the_middle(tmp_path):
    store = planted_videos(tmp_path / "centre", "centre")
    for pair, metrics in by_aggregate(store, "central").items():
        assert metrics["mAP"] == 1.0 and metrics["P@1"] == 1.0, pair


@pytest.mark.parametrize(
    ("spans", "duration", "central"),
    [
        ([(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)], 10.0, 2),
        ([(0, 2.5), (2.5, 5), (5, 7.5), (7.5, 10)], 10.0, 1),  # on a boundary: the earlier
        ([(4, 6), (0, 2), (2, 4)], 6.0, 2),  # items out of time order
        ([(k * 2.0, k * 2.0 + 2) for k in range(6)], 22.0, 5),  # frames up to 12 s of 22
        ([(0, 1), (9, 10)], 10.0, 0),  # a gap: the nearest, the earlier on a tie
        ([(0, 1), (6, 7)], 10.0, 1),
        ([(0, 2), (2, 4), (4, 6)], None, 1),  # no duration: the middle of the spans
        ([(3.0, 4.0)], 100.0, 0),  # one item
        ([(None, None), (None, None)], None, 0),  # no spans
    ],
)
def test_central_item(spans, duration, central):
    assert central_item(spans, duration) == central


def brute_force(store: Store, query: str, result: str, aggregate: str) -> dict:
    """Metrics from a score matrix built file by file, pair by pair."""
    items = store.items.to_pylist()
    labels = {a["asset_id"]: frozenset(a["labels"]) for a in store.assets.to_pylist()}

    def files(modality):
        ids, vectors = store.embeddings(modality)
        asset = {i["item_id"]: i["asset_id"] for i in items}
        out: dict[int, list[np.ndarray]] = {}
        for i, v in zip(ids, vectors):
            out.setdefault(asset[int(i)], []).append(v)
        return out

    cands = files(result)
    if query == "text":
        sets = sorted({s for s in labels.values() if s}, key=sorted)
        text = Planted(store).embed_queries([", ".join(sorted(s)) for s in sets])
        queries = {-1 - n: [v] for n, v in enumerate(text)}
        q_labels = {-1 - n: s for n, s in enumerate(sets)}
    else:
        queries = {a: v for a, v in files(query).items() if labels[a]}
        q_labels = labels
    scores = np.zeros((len(queries), len(cands)))
    for r, q_vectors in enumerate(queries.values()):
        for c, c_vectors in enumerate(cands.values()):
            if aggregate == "max":
                scores[r, c] = max(float(q @ v) for q in q_vectors for v in c_vectors)
            else:
                q_mean, c_mean = np.mean(q_vectors, axis=0), np.mean(c_vectors, axis=0)
                scores[r, c] = q_mean @ c_mean / np.linalg.norm(q_mean) / np.linalg.norm(c_mean)
    relevant = np.array([[q_labels[q] == labels[c] for c in cands] for q in queries])
    exclude = np.array([[q == c for c in cands] for q in queries]) if query == result else None
    return retrieval_metrics(scores, relevant, exclude)


@pytest.fixture(scope="module")
def uneven(tmp_path_factory) -> Store:
    """Files of 1 to 4 frames and windows, noise with a faint trace of their class: every
    score counts in the metrics."""
    rng = np.random.default_rng(3)
    files = []
    for n in range(10):
        c = CLASSES[n % len(CLASSES)]
        items = {}
        for m in ("image", "audio"):
            noise = 10 * rng.standard_normal((int(rng.integers(1, 5)), DIM)) / np.sqrt(DIM)
            items[m] = list(DIRECTIONS[c] + noise)
        files.append(([c], items))
    return write_videos(tmp_path_factory.mktemp("uneven") / "idx", files)


@pytest.mark.parametrize("aggregate", ["max", "mean"])
@pytest.mark.parametrize("chunk", [retrieval.QUERY_CHUNK, 3])  # 3: files split across blocks
@pytest.mark.parametrize("exact", [False, True])
def test_aggregates_equal_a_brute_force_computation(uneven, monkeypatch, aggregate, chunk, exact):
    monkeypatch.setattr(retrieval, "QUERY_CHUNK", chunk)
    run = Evaluation(Planted(uneven), aggregate=aggregate, exact=exact)
    for query, result in PAIRS:
        found = run.pair(query, result).metrics
        expected = brute_force(uneven, query, result, aggregate)
        assert found["queries"] == expected["queries"] > 0
        assert found == pytest.approx(expected), (query, result)


def test_an_approximate_index_is_scored_as_it_serves(uneven, tmp_path):
    copy = tmp_path / "ivf"
    shutil.copytree(uneven.dir, copy)
    rebuild_indexes(copy, "IVF2,Flat")
    ivf = Store.open(copy)
    for aggregate in ("central", "max"):
        exact = Evaluation(Planted(uneven), aggregate=aggregate, exact=True).pair("image", "image")
        full = Evaluation(Planted(ivf), aggregate=aggregate, nprobe=2).pair("image", "image")
        half = Evaluation(Planted(ivf), aggregate=aggregate, nprobe=1).pair("image", "image")
        assert full.metrics == pytest.approx(exact.metrics)
        assert half.metrics["mAP"] != pytest.approx(exact.metrics["mAP"])  # one list of two


def test_files_of_one_item_score_as_items(tmp_path):
    rng = np.random.default_rng(5)
    files = [
        (
            [c],
            {m: [DIRECTIONS[c] + 0.9 * rng.standard_normal(DIM) / 10] for m in ("image", "audio")},
        )
        for c in CLASSES
        for _ in range(4)
    ]
    store = build(tmp_path / "idx", files)
    items = {(r.query, r.result): r.metrics for r in Evaluation(Planted(store)).pairs(PAIRS)}
    for aggregate in retrieval.AGGREGATES:
        for pair, metrics in by_aggregate(store, aggregate).items():
            assert metrics == pytest.approx(items[pair]), (aggregate, pair)


@pytest.mark.parametrize("bad", ["median", "", "MAX"])
def test_an_unknown_aggregate_is_one_line(tmp_path, bad):
    store = build(tmp_path / "idx", [(["dog"], {"audio": [DIRECTIONS["dog"]]})])
    for call in (
        lambda: Evaluation(Planted(store), aggregate=bad),
        lambda: evaluate(Planted(store), aggregate=bad),
    ):
        with pytest.raises(ParameterError) as error:
            call()
        assert str(error.value).startswith("aggregate: unknown aggregate")
        assert "central, mean, max" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ParameterError, match=r"^aggregate: caption retrieval"):
        evaluate(Planted(store), protocol="captions", aggregate="max")


def test_the_result_holds_central_beside_the_aggregate(tmp_path):
    store = planted_videos(tmp_path / "off", "off-centre")
    plain = evaluate(Planted(store), pairs="image:image")
    assert "aggregate" not in plain.as_dict() and "central" not in plain.as_dict()
    assert "aggregate" not in plain.as_dict()["pairs"][0] and plain.rows[0].aggregate is None
    assert plain.rows[0].metrics["queries"] == 12 * FRAMES  # every frame a query

    result = evaluate(Planted(store), pairs="image:image,audio:audio", aggregate="max",
                      compare_exact=True)  # fmt: skip
    report = json.loads(json.dumps(result.as_dict()))
    assert report["aggregate"] == "max"
    assert [p["aggregate"] for p in report["pairs"]] == ["max", "max"]
    assert [p["aggregate"] for p in report["central"]] == ["central", "central"]
    assert [p["aggregate"] for p in report["central_exact"]] == ["central", "central"]
    assert [(p["query"], p["result"]) for p in report["central"]] == [
        ("image", "image"),
        ("audio", "audio"),
    ]
    for best, central in zip(report["pairs"], report["central"]):
        assert best["mAP"] > central["mAP"] and best["candidates"] == central["candidates"] == 12

    only = evaluate(Planted(store), pairs="image:image", aggregate="central")
    assert only.central is None and only.rows[0].aggregate == "central"
    assert only.rows[0].metrics == result.central[0].metrics


def test_the_table_shows_central_then_the_aggregate(tmp_path):
    from typer.testing import CliRunner

    from xsearch.cli.main import app

    planted_videos(tmp_path / "home" / "videos", "off-centre")
    env = {"XSEARCH_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    args = ["eval", "--index", "videos", "--pairs", "image:image,audio:image"]
    done = CliRunner().invoke(app, [*args, "--aggregate", "mean"], env=env)
    assert done.exit_code == 0, done.output
    rows = [[cell.strip() for cell in re.split("[│┃]", line)] for line in done.stdout.splitlines()]
    header = next(r for r in rows if "aggregate" in r)
    shown = [dict(zip(header, r)) for r in rows if "videos" in r]
    assert [(r["query"], r["result"], r["aggregate"]) for r in shown] == [
        ("image", "image", "central"),
        ("image", "image", "mean"),
        ("audio", "image", "central"),
        ("audio", "image", "mean"),
    ]
    assert float(shown[1]["mAP"]) > float(shown[0]["mAP"]) + 35  # in %
    bad = CliRunner().invoke(app, [*args, "--aggregate", "median"], env=env)
    assert bad.exit_code != 0 and "--aggregate: unknown aggregate 'median'" in bad.output
