"""The CUDA path: fp16 autocast gives the CPU float32 results to fp16 precision; indexes placed
on the GPU(s) with faiss-gpu (one GPU, float16 storage, sharded) answer as the CPU's exact
index does. Without a GPU, asking for one is a one-line error."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """5,000 audio items, 10 per asset."""
    directory = tmp_path_factory.mktemp("gpu") / "idx"
    with Writer(directory, MODEL) as writer:
        changes = Changes()
        ids = writer.allocate_items(5000)
        for a in range(500):
            asset = writer.allocate_asset()
            changes.new_assets.append(
                {"asset_id": asset, "path": f"/m/{a}.wav", "content_hash": str(a),
                 "kind": "audio", "bytes": 1, "mtime": 0.0, "duration": 100.0,
                 "labels": ["dog"] if a % 3 == 0 else ["rain"]}
            )  # fmt: skip
            for w in range(10):
                changes.new_items.append(
                    {"item_id": int(ids[a * 10 + w]), "asset_id": asset, "modality": "audio",
                     "start": 10.0 * w, "end": 10.0 * (w + 1), "text": None}
                )  # fmt: skip
        changes.add_vectors("audio", ids, clustered(5000, seed=3))
        return writer.commit(changes)


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


# --- without a GPU ---------------------------------------------------------------------------


@pytest.mark.skipif(gpu_count() > 0, reason="checks the error shown when there is no GPU")
def test_asking_for_a_gpu_without_one_is_one_clear_error(store, cpu_index):
    index, _ = cpu_index
    with pytest.raises(UsageError, match="--gpu needs faiss-gpu and a CUDA GPU") as error:
        to_gpu(index)
    assert "\n" not in str(error.value)
    with pytest.raises(UsageError, match="--gpu needs faiss-gpu"):
        Store.open(store.dir, placement=Placement(gpu=True))  # before any index is loaded
    with pytest.raises(UsageError, match="add --gpu"):
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
