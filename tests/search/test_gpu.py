"""The CUDA path: fp16 autocast gives the CPU float32 results to fp16 precision; indexes placed
on the GPU(s) with faiss-gpu (one GPU, float16 storage, sharded) answer as the CPU's exact
index does. Without a GPU, asking for one is a one-line error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from xsearch.errors import UsageError
from xsearch.indexes import placement
from xsearch.indexes.faiss_index import build
from xsearch.indexes.placement import Placement, gpu_count, to_gpu
from xsearch.models import resolve_device
from xsearch.models.checkpoint import build_model
from xsearch.models.config import get_config
from xsearch.models.encoder import AudioCLIPEncoder
from xsearch.search import engine
from xsearch.search.engine import SearchOptions, search
from xsearch.store.store import Changes, Store, Writer

MODEL = {"encoder": "audioclip", "config": "audioclip-tiny", "weights": "random"}


def needs_cuda(test):
    test = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")(test)
    return pytest.mark.gpu(test)


def needs_faiss_gpu(test):
    test = pytest.mark.skipif(gpu_count() == 0, reason="needs a CUDA GPU and faiss-gpu")(test)
    return pytest.mark.gpu(test)


@pytest.mark.parametrize("config", ["audioclip-tiny", "audioclip"])
@needs_cuda
def test_cuda_fp16_matches_cpu(config):
    torch.manual_seed(0)
    cpu_model = build_model(get_config(config))
    torch.manual_seed(0)
    gpu_model = build_model(get_config(config))
    cpu = AudioCLIPEncoder(cpu_model, "cpu", batch_size=4)
    gpu = AudioCLIPEncoder(gpu_model, "cuda", batch_size=4)
    assert gpu.fp16 and not cpu.fp16

    rng = np.random.default_rng(0)
    texts = ["a dog barking", "rain on a tin roof", "church bells"]
    images = [Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)) for _ in "abc"]
    waves = [(rng.standard_normal(44100 * 2) * 3000).astype(np.float32) for _ in "abc"]
    quiet = np.zeros(44100 * 2, np.float32)  # digital silence around a tone: fp16 underflows
    quiet[30000:40000] = 3000 * np.sin(np.arange(10000) * 0.1)
    waves.append(quiet)
    for name, a, b in (
        ("text", cpu.embed_text(texts), gpu.embed_text(texts)),
        ("image", cpu.embed_images(images), gpu.embed_images(images)),
        ("audio", cpu.embed_audio(waves), gpu.embed_audio(waves)),
    ):
        assert np.isfinite(b).all(), name
        cos = (a * b).sum(axis=1)
        assert cos.min() > 0.99, (name, cos)


@needs_cuda
def test_auto_device_picks_cuda():
    assert resolve_device("auto") == "cuda"


# --- indexes on the GPU ----------------------------------------------------------------------


def clustered(n: int, seed: int, dim: int = 1024) -> np.ndarray:
    """Unit vectors around 50 centres (uniform random vectors have no near neighbours)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1).standard_normal((50, dim)).astype(np.float32)
    v = centres[rng.integers(0, 50, n)] + 0.7 * rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def cpu_index():
    """An exact index of 20,000 vectors under sparse ids (as a store's are)."""
    ids = np.arange(20_000, dtype=np.int64) * 3 + 11
    return build(ids, clustered(20_000, seed=0)), ids


def top(index, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


@needs_faiss_gpu
def test_gpu_flat_equals_cpu_exact(cpu_index):
    index, _ = cpu_index
    queries = clustered(64, seed=5)
    want_scores, want_ids = top(index, queries)
    gpu = to_gpu(index, devices=[0])
    assert placement.is_gpu(gpu) and not placement.is_gpu(index)
    scores, ids = top(gpu, queries)
    assert np.array_equal(ids, want_ids)
    assert np.allclose(scores, want_scores, atol=1e-4)


@needs_faiss_gpu
def test_gpu_float16_storage_scores_to_1e3(cpu_index):
    index, _ = cpu_index
    queries = clustered(64, seed=6)
    want_scores, want_ids = top(index, queries)
    scores, ids = top(to_gpu(index, float16=True, devices=[0]), queries)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, want_ids)])
    assert recall >= 0.98  # float16 may swap near-ties, nothing more
    exact = {(q, i): s for q in range(len(queries)) for i, s in zip(want_ids[q], want_scores[q])}
    same = [(q, i, s) for q in range(len(queries)) for i, s in zip(ids[q], scores[q])
            if (q, i) in exact]  # fmt: skip
    assert max(abs(s - exact[q, i]) for q, i, s in same) <= 1e-3


@needs_faiss_gpu
def test_sharded_across_gpus_equals_one_gpu(cpu_index):
    """Sharded over every GPU (over GPU 0 twice when there is one: the same code path)."""
    index, _ = cpu_index
    queries = clustered(64, seed=7)
    devices = list(range(gpu_count())) if gpu_count() > 1 else [0, 0]
    single_scores, single_ids = top(to_gpu(index, devices=[0]), queries)
    sharded = to_gpu(index, shard=True, devices=devices)
    assert sharded.ntotal == index.ntotal
    scores, ids = top(sharded, queries)
    assert np.array_equal(ids, single_ids)
    assert np.allclose(scores, single_scores, atol=1e-5)
    replicated_scores, _ = top(to_gpu(index, shard=False, devices=devices), queries)
    assert np.allclose(replicated_scores, single_scores, atol=1e-5)


@needs_faiss_gpu
def test_gpu_ivf_with_nprobe_and_a_filter(cpu_index):
    _, ids = cpu_index
    vectors = clustered(20_000, seed=0)
    ivf = build(ids, vectors, "IVF64,Flat")
    gpu = to_gpu(ivf, devices=[0])
    allowed = ids[::7]
    for q in clustered(16, seed=8):
        for nprobe in (1, 64):  # 64: every list, exact
            cpu = _cpu_ivf_top(ivf, q, nprobe)
            assert [i for i, _ in placement.search(gpu, q, 10, nprobe=nprobe)] == cpu
        got = [i for i, _ in placement.search(gpu, q, 10, allowed, nprobe=64)]
        scores = vectors @ q
        order = np.argsort(-scores[::7], kind="stable")[:10]
        assert got == allowed[order].tolist()  # post-filtered, widened until 10 are allowed


def _cpu_ivf_top(index, query: np.ndarray, nprobe: int) -> list[int]:
    import faiss

    params = faiss.SearchParametersIVF(nprobe=nprobe)
    return index.search(query[None, :], 10, params=params)[1][0].tolist()


@needs_faiss_gpu
def test_unsupported_types_are_refused_on_the_gpu(cpu_index):
    _, ids = cpu_index
    hnsw = build(ids[:1000], clustered(1000, seed=0), "HNSW16")
    with pytest.raises(UsageError, match="cannot be placed on the GPU"):
        to_gpu(hnsw)


def add_assets(directory, assets: int, seed: int, first: int = 0) -> Store:
    """Commit `assets` audio files of 10 items each (a third labelled dog, the rest rain)."""
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        ids = writer.allocate_items(10 * assets)
        for a in range(first, first + assets):
            asset = writer.allocate_asset()
            changes.new_assets.append(
                {"asset_id": asset, "path": f"/m/{a}.wav", "content_hash": str(a),
                 "kind": "audio", "bytes": 1, "mtime": 0.0, "duration": 100.0,
                 "labels": ["dog"] if a % 3 == 0 else ["rain"]}
            )  # fmt: skip
            for w in range(10):
                changes.new_items.append(
                    {"item_id": int(ids[(a - first) * 10 + w]), "asset_id": asset,
                     "modality": "audio", "start": 10.0 * w, "end": 10.0 * (w + 1), "text": None}
                )  # fmt: skip
        changes.add_vectors("audio", ids, clustered(10 * assets, seed=seed))
        return writer.commit(changes)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """5,000 audio items, 10 per asset."""
    return add_assets(tmp_path_factory.mktemp("gpu") / "idx", 500, seed=3)


def option_sets(store: Store, q: np.ndarray) -> dict[str, SearchOptions | None]:
    """No filter; a filter; exclusions; and a filter so selective that its items lie beyond
    the GPU's largest k (the three items farthest from `q`): answered by the exact fallback."""
    ids, vectors = store.embeddings("audio")
    order = np.argsort(-(vectors @ q), kind="stable")
    nearest_assets = {a["asset_id"] for a in store.items_by_id.rows(ids[order[:30]].tolist())}
    rare = ", ".join(str(i) for i in ids[order[-3:]])
    return {
        "none": None,
        "where": SearchOptions(where="list_contains(labels, 'dog') AND start >= 50"),
        "exclude": SearchOptions(exclude_assets=frozenset(nearest_assets)),
        "rare": SearchOptions(where=f"item_id IN ({rare})"),
    }


def same_hits(got, want, atol: float = 1e-4) -> None:
    assert [(h.item_id, h.asset_id, h.path) for h in got] == [
        (h.item_id, h.asset_id, h.path) for h in want
    ]
    assert np.allclose([h.cosine for h in got], [h.cosine for h in want], atol=atol)
    assert np.allclose([h.score for h in got], [h.score for h in want], atol=1e-2)


@needs_faiss_gpu
def test_engine_on_a_gpu_store_equals_the_cpu_store(store):
    on_gpu = Store.open(store.dir, placement=Placement(gpu=True))
    assert placement.is_gpu(on_gpu.faiss_index("audio"))
    dog = SearchOptions(where="list_contains(labels, 'dog') AND start >= 50")
    for q in clustered(8, seed=9):
        for options in (None, dog):
            want = search(store, q, "audio", 10, options)
            got = search(on_gpu, q, "audio", 10, options)
            assert [h.item_id for h in got] == [h.item_id for h in want]
            assert np.allclose([h.score for h in got], [h.score for h in want], atol=1e-3)


@needs_faiss_gpu
def test_engine_on_the_gpu_equals_cpu_with_filters_exclusions_and_the_exact_fallback(
    store, monkeypatch
):
    on_gpu = Store.open(store.dir, placement=Placement(gpu=True))
    assert placement.is_gpu(on_gpu.faiss_index("audio"))
    fallbacks = []
    exact_over_stored = engine._exact_over_stored
    monkeypatch.setattr(
        engine, "_exact_over_stored", lambda *a: fallbacks.append(a) or exact_over_stored(*a)
    )
    for q in clustered(4, seed=11):
        for options in option_sets(store, q).values():
            for target, k in (("audio", 10), ("all", 5)):
                want = search(store, q, target, k, options)
                got = search(on_gpu, q, target, k, options)
                assert want and len(got) <= k
                same_hits(got, want)
        assert fallbacks, "the selective filter is answered by the exact fallback"


@needs_faiss_gpu
def test_api_open_index_on_the_gpu_equals_cpu_and_follows_new_generations(tmp_path):
    from xsearch.api import open_index

    add_assets(tmp_path / "idx", 300, seed=4)
    cpu = open_index("idx", root=tmp_path, device="cpu")
    gpu = open_index("idx", root=tmp_path, device="cpu", gpu=True)
    items = cpu.store.item_ids("audio")[[0, 777, 2999]].tolist()
    for item in items:
        for where in (None, "list_contains(labels, 'dog')"):
            want = cpu.search(like=item, k=10, where=where, exclude_self=True)
            same_hits(gpu.search(like=item, k=10, where=where, exclude_self=True), want)
    add_assets(tmp_path / "idx", 50, seed=5, first=300)
    assert gpu.refresh() and cpu.refresh()
    assert gpu.store.placement == Placement(gpu=True)
    assert placement.is_gpu(gpu.store.faiss_index("audio"))
    new = gpu.store.item_ids("audio")[-1].item()
    same_hits(gpu.search(like=new, k=10), cpu.search(like=new, k=10))


@needs_faiss_gpu
def test_cli_query_on_the_gpu(store):
    from typer.testing import CliRunner

    from xsearch.cli.main import app

    env = {"XSEARCH_HOME": str(store.dir.parent), "COLUMNS": "200"}
    item = str(store.item_ids("audio")[42])
    base = ["query", "-i", store.dir.name, "--like", item, "-k", "10", "--json"]
    runs = {
        flags: CliRunner().invoke(app, [*base, *flags], env=env)
        for flags in ((), ("--gpu",), ("--gpu", "--fp16-index"))
    }
    for flags, done in runs.items():
        assert done.exit_code == 0, (flags, done.output)
    hits = {flags: [json.loads(line) for line in done.stdout.splitlines()] for flags, done in
            runs.items()}  # fmt: skip
    cpu, gpu, half = hits[()], hits[("--gpu",)], hits[("--gpu", "--fp16-index")]
    assert [h["item_id"] for h in gpu] == [h["item_id"] for h in cpu]
    assert gpu[0]["item_id"] == half[0]["item_id"] == int(item)
    assert len({h["item_id"] for h in half} & {h["item_id"] for h in cpu}) >= 8  # near-ties


@needs_faiss_gpu
def test_eval_on_the_gpu_equals_cpu_beyond_the_gpus_largest_k(store):
    """5,000 candidates: the GPU returns 2,048, the exact index ranks the rest as the CPU does."""
    from xsearch.api import open_index
    from xsearch.eval.retrieval import Evaluation

    cpu = Evaluation(open_index(store.dir.name, root=store.dir.parent, device="cpu"))
    gpu = open_index(store.dir.name, root=store.dir.parent, device="cpu", gpu=True)
    got = Evaluation(gpu).pair("audio", "audio").metrics
    assert got == pytest.approx(cpu.pair("audio", "audio").metrics, abs=1e-5)


# --- without a GPU ---------------------------------------------------------------------------


@pytest.mark.skipif(gpu_count() > 0, reason="checks the error shown when there is no GPU")
def test_asking_for_a_gpu_without_one_is_one_clear_error(store, cpu_index):
    index, _ = cpu_index
    with pytest.raises(UsageError, match="gpu: needs faiss-gpu and a CUDA GPU") as error:
        to_gpu(index)
    assert "\n" not in str(error.value)
    with pytest.raises(UsageError, match="gpu: needs faiss-gpu"):
        Store.open(store.dir, placement=Placement(gpu=True))  # before any index is loaded
    with pytest.raises(UsageError, match="fp16_index: applies to GPU search only"):
        Placement(float16=True)
    assert placement.place(index, Placement()) is index  # the CPU placement is a no-op
    assert not placement.is_gpu(index)


def test_the_post_filtered_search_widens_until_enough_are_allowed(cpu_index):
    """`placement.search`'s filtering, run on a CPU index (it only calls `index.search`)."""
    index, ids = cpu_index
    vectors = clustered(20_000, seed=0)
    q = clustered(1, seed=10)[0]
    order = np.argsort(-(vectors @ q), kind="stable")
    allowed = ids[order[500:530]]  # ranked 500th to 530th: found after widening (64 -> 1024)
    got = placement.search(index, q, 10, allowed)
    assert [i for i, _ in got] == ids[order[500:510]].tolist()
    rare = ids[order[-3:]]  # the three farthest: beyond the largest k, so fewer come back
    assert len(placement.search(index, q, 3, rare)) < 3


@pytest.mark.skipif(gpu_count() > 0, reason="checks the error shown when there is no GPU")
@pytest.mark.parametrize("command", ["query", "serve", "eval"])
def test_gpu_option_without_a_gpu_is_one_line_and_no_traceback(store, command):
    from typer.testing import CliRunner

    from xsearch.cli.main import app

    args = {
        "query": ["query", "-i", "idx", "--like", str(store.item_ids("audio")[0]), "--gpu"],
        "serve": ["serve", "-i", "idx", "--port", "0", "--gpu"],
        "eval": ["eval", "-i", "idx", "--pairs", "audio:audio", "--gpu", "--fp16-index"],
    }[command]
    env = {"XSEARCH_HOME": str(store.dir.parent), "COLUMNS": "200"}
    done = CliRunner().invoke(app, args, env=env)
    assert done.exit_code == 2, done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --gpu: needs faiss-gpu"), done.stderr
    assert "Traceback" not in done.output and done.stdout == ""


@pytest.mark.skipif(gpu_count() > 0, reason="checks the error shown when there is no GPU")
def test_gpu_option_without_a_gpu_in_a_real_process(store):
    from tests.helpers.cli import run_cli

    item = str(store.item_ids("audio")[0])
    done = run_cli("query", "-i", "idx", "--like", item, "--gpu",
                   env={"XSEARCH_HOME": str(store.dir.parent)})  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("error: --gpu: needs faiss-gpu and a CUDA GPU")
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""


def test_fp16_index_without_gpu_is_refused(store):
    from typer.testing import CliRunner

    from xsearch.cli.main import app

    item = str(store.item_ids("audio")[0])
    done = CliRunner().invoke(
        app, ["query", "-i", "idx", "--like", item, "--fp16-index"],
        env={"XSEARCH_HOME": str(store.dir.parent), "COLUMNS": "200"},
    )  # fmt: skip
    assert done.exit_code == 2 and "--fp16-index: applies to GPU search only" in done.stderr


@pytest.mark.slow  # every option set, twice
def test_the_engines_gpu_branch_run_on_a_cpu_index_equals_the_cpu_search(store, monkeypatch):
    """The GPU branch (post-filtered `placement.search`, then the exact fallback over stored
    vectors for a selective filter) on the CPU index: `placement.search` only calls
    `index.search`, so only `is_gpu` needs to say yes."""
    queries = clustered(4, seed=12)
    want = {
        (n, name, target): search(store, q, target, k, options)
        for n, q in enumerate(queries)
        for name, options in option_sets(store, q).items()
        for target, k in (("audio", 10), ("all", 5))
    }
    calls = {"gpu": 0, "fallback": 0}
    gpu_search, exact_over_stored = placement.search, engine._exact_over_stored

    def counted(key, function):
        def wrapper(*args, **kwargs):
            calls[key] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(placement, "is_gpu", lambda index: True)
    monkeypatch.setattr(placement, "search", counted("gpu", gpu_search))
    monkeypatch.setattr(engine, "_exact_over_stored", counted("fallback", exact_over_stored))
    monkeypatch.setattr(engine, "EXACT_CHUNK", 2)  # the chunked merge, over 3 allowed items
    for (n, name, target), hits in want.items():
        fallbacks = calls["fallback"]
        options = option_sets(store, queries[n])[name]
        got = search(store, queries[n], target, 10 if target == "audio" else 5, options)
        same_hits(got, hits, atol=1e-6)
        assert hits and (calls["fallback"] > fallbacks) == (name == "rare")
    assert calls["gpu"] >= len(want)


@pytest.mark.slow  # two evaluations of 5,000 items
def test_the_eval_gpu_branch_run_on_a_cpu_index_equals_cpu(store, monkeypatch):
    """Evaluation's GPU branch on the CPU index: a search of at most GPU_MAX_K (2,048) of the
    5,000 candidates, the rest ranked by their exact inner product."""
    from xsearch.api import open_index
    from xsearch.eval import retrieval

    index = open_index(store.dir.name, root=store.dir.parent, device="cpu")
    want = retrieval.Evaluation(index).pair("audio", "audio").metrics
    searched = []
    cpu_search = index.store.faiss_index("audio").search

    class Spy:
        """The CPU index, as the GPU branch sees it: records the k it is asked for."""

        ntotal = index.store.faiss_index("audio").ntotal

        def search(self, queries, k, params=None):
            searched.append(k)
            return cpu_search(queries, k, params=params)

    monkeypatch.setattr(placement, "is_gpu", lambda index: True)
    monkeypatch.setattr(placement, "is_gpu_flat", lambda index: True)
    monkeypatch.setattr(placement, "parameters", lambda index, nprobe=None: None)
    (segment,) = index.store.segments
    monkeypatch.setitem(segment._indexes, "audio", Spy())
    got = retrieval.Evaluation(index).pair("audio", "audio").metrics
    assert set(searched) == {placement.GPU_MAX_K}
    assert got == pytest.approx(want, abs=1e-6)


def test_refresh_keeps_the_placement(tmp_path, monkeypatch):
    """A reader opened with --gpu follows a new generation onto the GPU(s) as well."""
    from xsearch.api import open_index

    monkeypatch.setattr(placement, "require_gpu", lambda: 1)  # nothing is loaded here
    add_assets(tmp_path / "idx", 5, seed=1)
    index = open_index("idx", root=tmp_path, gpu=True, fp16_index=True)
    assert index.store.placement == Placement(gpu=True, float16=True)
    add_assets(tmp_path / "idx", 5, seed=2, first=5)
    assert index.refresh() and index.store.generation == 2
    assert index.store.placement == Placement(gpu=True, float16=True)
