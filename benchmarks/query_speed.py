"""Query speed on synthetic stores: text-query latency split into its parts, and approximate
indexes (IVF-PQ, IVF-SQ8, HNSW) against exact search at equal recall.

Part 1, latency. For stores of 10k, 100k and 1M audio items, times `Index.search(text=...)`
end to end and its parts: text encoding (the model's text tower, random weights), vector
search (the engine's exact numpy path), metadata lookup (DuckDB), and the engine's `search()`
from a query vector (vector search + metadata); next to a bare numpy matrix-vector product +
top-k over the same vectors, in the same run. p50 and p95 over the repeats, in milliseconds.
The target: end-to-end p50 <= 1.5 x (text encoding + bare numpy) at 100k.

Part 2, approximate search. On the same store (1M by default), each FAISS index-factory
string is built with the project's own path (`xsearch.indexes.faiss_index.new_index`, an
`IndexIDMap2` over inner product, trained on a sample of `--train-size` vectors and filled
with `update`; a store no larger than the sample is rebuilt and published with
`Writer.rebuild`, what `xsearch index rebuild --factory` runs). Its knob (IVF nprobe, HNSW
efSearch) and, for refined indexes ("...,RFlat"), the re-ranking factor k_factor are swept; for each
setting the held-out queries run one at a time, like a user's, through the index and through
the engine's `search()`. recall@10 = |found top 10 & exact top 10| / 10 against exact top 10
computed with numpy. Exact single-query search (the engine on the flat index) is timed right
before each index's sweep, so that every speed-up compares two measurements of the same
minutes. The target: queries/s at recall@10 >= 0.95 at least 10 x exact search at 1M.

Vectors: uniform random vectors in 1024-d have no near neighbours (every pair is at cosine
~0 +- 0.03) and no ANN method reaches recall on them; embeddings are clustered and
low-dimensional. `Mixture` draws them as (seed 0, recipe in its fields):
    x = normalise(shared * m + c_j + spread * (z * s_j) @ R.T),
with R a random rotation, m a common unit direction (embeddings share a mean: random pairs
sit at cosine ~0.15), c_j one of 3,000 unit centres drawn with axis variances
~ 1 / (1 + i) in R (a power-law spectrum, effective dimension ~35), cluster weights
log-normal (sigma 1: unequal cluster sizes), and per-cluster anisotropic noise z * s_j
(the same power law times a log-normal factor per cluster and axis, rows of s unit norm).
Queries are held-out draws of the same mixture (not in the index) with an isotropic
perturbation of norm `query_noise` (0.5) added, then renormalised. Neighbour statistics
(cosine of the 1st/10th/100th neighbour, local intrinsic dimensionality) are reported with
the results.

    .venv/bin/python benchmarks/query_speed.py [--sizes 10000,100000,1000000]
        [--ann-sizes 1000000] [--ann-factories "IVF4096,SQ8;HNSW32"] [--repeats 30]
        [--config audioclip] [--out results.json] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing xsearch
    sys.path.insert(0, str(ROOT))

import xsearch  # noqa: E402

xsearch.tune_threads()  # before numpy and faiss load: the thread pools' spin limits

# isort: split
import faiss  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.synthetic import audio_changes  # noqa: E402
from xsearch.api import Index  # noqa: E402
from xsearch.indexes.faiss_index import new_index, update  # noqa: E402
from xsearch.models import load_encoder  # noqa: E402
from xsearch.search import engine  # noqa: E402
from xsearch.search.engine import SearchOptions, search  # noqa: E402
from xsearch.store.store import Store, Writer, full_merge  # noqa: E402

console = Console(width=150)
QUERIES = ["a dog barking", "rain on a tin roof", "church bells", "a car horn in traffic"]
K = 10
BLOCK = 50_000  # vectors are drawn in blocks of this size: a smaller store is a prefix
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
EFS = (10, 16, 32, 64, 128, 256, 512)
K_FACTORS = (1, 8, 16, 32)  # 1: the base index's own top k, as without refinement
QUICK_FACTORIES = "IVF16,PQ64x4fsr,RFlat;IVF16,SQ8"
FACTORIES = "IVF4096,PQ64,RFlat;IVF4096,SQ8"


# --- synthetic embeddings -------------------------------------------------------------------


@dataclass(frozen=True)
class Mixture:
    """Clustered unit vectors shaped like CLIP-style embeddings (recipe: module docstring)."""

    dim: int = 1024
    centres: int = 3000
    spectrum: float = 1.0  # axis variances fall as 1 / (1 + i) ** spectrum
    shared: float = 0.5  # weight of the direction all items share
    spread: float = 0.8  # norm of the within-cluster noise (centres are unit vectors)
    query_noise: float = 0.5  # norm of the isotropic perturbation of each query
    seed: int = 0

    @cached_property
    def _model(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, 0])
        d = self.dim
        rotation = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)
        axis_std = (1.0 + np.arange(d)) ** (-self.spectrum / 2)
        axis_std = (axis_std / np.linalg.norm(axis_std)).astype(np.float32)
        shared = rng.standard_normal(d).astype(np.float32)
        centres = (rng.standard_normal((self.centres, d), dtype=np.float32) * axis_std) @ rotation.T
        weights = rng.lognormal(0.0, 1.0, self.centres)
        noise = axis_std * np.exp(0.5 * rng.standard_normal((self.centres, d))).astype(np.float32)
        return {
            "rotation": rotation,
            "shared": shared / np.linalg.norm(shared),
            "centres": centres / np.linalg.norm(centres, axis=1, keepdims=True),
            "weights": weights / weights.sum(),
            "noise": noise / np.linalg.norm(noise, axis=1, keepdims=True),
        }

    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        m = self._model
        cluster = rng.choice(self.centres, size=n, p=m["weights"])
        z = rng.standard_normal((n, self.dim), dtype=np.float32) * m["noise"][cluster]
        x = self.shared * m["shared"] + m["centres"][cluster] + self.spread * (z @ m["rotation"].T)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def blocks(self, n: int) -> Iterator[np.ndarray]:
        """The first `n` points, in blocks of `BLOCK` (block b has its own seed)."""
        for b, start in enumerate(range(0, n, BLOCK)):
            yield self._draw(BLOCK, np.random.default_rng([self.seed, 1, b]))[: n - start]

    def queries(self, n: int) -> np.ndarray:
        """Held-out points of the mixture, perturbed, renormalised."""
        rng = np.random.default_rng([self.seed, 2])
        q = self._draw(n, rng)
        p = rng.standard_normal(q.shape, dtype=np.float32)
        q += self.query_noise * p / np.linalg.norm(p, axis=1, keepdims=True)
        return q / np.linalg.norm(q, axis=1, keepdims=True)

    def recipe(self) -> dict:
        return {**asdict(self), "block": BLOCK, "cluster_weights": "lognormal(0, 1)"}


def clustered_store(directory: Path, mixture: Mixture, n: int, per_commit: int = 200_000) -> float:
    """Commit `n` audio items (10 per asset) through the store's Writer, `per_commit` at a
    time (each commit a segment); returns seconds. Large stores go in several commits: one
    commit holds about five copies of its vectors (the vectors, their concatenation, the
    FAISS index and two while serialising it)."""
    t0, pending = time.perf_counter(), np.empty((0, mixture.dim), np.float32)
    for block in mixture.blocks(n):
        pending = np.concatenate([pending, block])
        while len(pending) >= per_commit:
            _commit_vectors(directory, pending[:per_commit])
            pending = pending[per_commit:]
    if len(pending):
        _commit_vectors(directory, pending)
    return time.perf_counter() - t0


def _commit_vectors(directory: Path, vectors: np.ndarray) -> None:
    model = {"encoder": "audioclip", "config": "audioclip", "weights": "synthetic"}
    with Writer(directory, model) as writer:
        writer.commit(audio_changes(writer, vectors))


def flat_vectors(index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of an exact IndexIDMap2, the vectors viewed without a copy."""
    outer = faiss.downcast_index(index)
    inner = faiss.downcast_index(outer.index)
    assert isinstance(inner, faiss.IndexFlat), type(inner)
    vectors = faiss.rev_swig_ptr(inner.get_xb(), inner.ntotal * inner.d)
    return faiss.vector_to_array(outer.id_map), vectors.reshape(inner.ntotal, inner.d)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions, scores) of each query's `k` best rows, best first; batched over rows."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(vectors), 100_000):
        s = queries @ vectors[start : start + 100_000].T
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        best_i = np.concatenate([best_i, part + start], axis=1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i, best_s


def neighbour_stats(vectors: np.ndarray, top_scores: np.ndarray) -> dict:
    """How hard the queries are: neighbour cosines, random-pair cosine, and the local intrinsic
    dimensionality (maximum-likelihood estimate over the 20 and 100 nearest, median)."""
    rng = np.random.default_rng(0)
    m = min(1000, len(vectors))
    a, b = (vectors[np.sort(rng.choice(len(vectors), m, replace=False))] for _ in range(2))
    dist = np.sqrt(np.maximum(2 - 2 * top_scores.astype(np.float64), 1e-12))

    def lid(k: int) -> float | None:
        if dist.shape[1] < k:
            return None
        d = dist[:, :k]
        return float(np.median(-1 / np.mean(np.log(d[:, :-1] / d[:, -1:]), axis=1)))

    k = min(dist.shape[1], 100)
    return {
        "random_pair_cosine": float((a @ b.T).mean()),
        "cosine_1st": float(top_scores[:, 0].mean()),
        "cosine_10th": float(top_scores[:, min(9, k - 1)].mean()),
        f"cosine_{k}th": float(top_scores[:, k - 1].mean()),
        "lid_20": lid(20),
        "lid_100": lid(100),
    }


# --- measuring ------------------------------------------------------------------------------


def percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


@contextmanager
def threads(n: int | None, user_api: str | None = None) -> Iterator[None]:
    """Limit the BLAS and OpenMP pools (numpy's and FAISS's) to `n` threads; None: as they
    are. On a 2-core machine shared with other work, a pool's second thread is often
    descheduled, and a call that waits for it takes milliseconds instead of microseconds."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api=user_api):
        yield


def one_at_a_time(
    fn: Callable[[np.ndarray], list[int]], queries: np.ndarray, n_threads: int | None = None
) -> dict:
    """Run `fn` on each query in turn: its results, queries/s and p50/p95 latency."""
    found, times = [], []
    with threads(n_threads):
        fn(queries[0])  # warm-up
        gc.collect()
        gc.disable()  # no collector pauses inside the timings
        try:
            for q in queries:
                t0 = time.perf_counter()
                found.append(fn(q))
                times.append(time.perf_counter() - t0)
        finally:
            gc.enable()
    p50, p95 = percentiles(times)
    return {"found": found, "qps": len(queries) / sum(times), "p50_ms": p50, "p95_ms": p95}


def both_modes(fn: Callable[[np.ndarray], list[int]], queries: np.ndarray, prefix: str) -> dict:
    """`one_at_a_time` with the thread pools as they are and with one thread each:
    {prefix_qps, prefix_p50_ms, prefix_qps_1t, prefix_p50_ms_1t, ...} and the results."""
    out = {}
    for suffix, n_threads in (("", None), ("_1t", 1)):
        r = one_at_a_time(fn, queries, n_threads)
        out[f"{prefix}_qps{suffix}"] = r["qps"]
        out[f"{prefix}_p50_ms{suffix}"], out[f"{prefix}_p95_ms{suffix}"] = r["p50_ms"], r["p95_ms"]
        out[f"_found{suffix}"] = r["found"]
    return out


def recall_at_k(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth.tolist())]))


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@contextmanager
def index_in(store: Store, index) -> Iterator[None]:
    """Serve `index` as the store's audio index (for an index built in memory, not published:
    writing a 1M refined index would double its memory while serialising)."""
    (reader,) = store.segments  # a compacted store: one segment
    before = reader.faiss_index("audio")
    reader._indexes["audio"] = index
    try:
        yield
    finally:
        reader._indexes["audio"] = before


def segments_part(store: Store, one: Store, mixture: Mixture, repeats: int) -> dict:
    """Exact search over `store`'s segments against the same items in one segment (`one`):
    the engine's search from a query vector, the two timed in turn query by query."""
    queries = mixture.queries(repeats * 5)
    for q in queries[:3]:  # warm: indexes loaded and checked, same answers
        a, b = search(store, q, "audio", K), search(one, q, "audio", K)
        assert [h.item_id for h in a] == [h.item_id for h in b]
    many, single = [], []
    for q in queries:
        for target, times in ((store, many), (one, single)):
            t0 = time.perf_counter()
            search(target, q, "audio", K)
            times.append(time.perf_counter() - t0)
    ratios = [a / b for a, b in zip(many, single)]
    return {"items": store.count("audio"), "segments": len(store.manifest.segments),
            "segmented_p50_ms": 1000 * float(np.median(many)),
            "one_segment_p50_ms": 1000 * float(np.median(single)),
            "ratio_p50": float(np.median(ratios)), "queries": len(queries)}  # fmt: skip


def latency(store: Store, encoder, repeats: int, n_threads: int | None = None) -> dict:
    """Part 1: p50/p95 of a text query end to end and of its parts, with the thread pools
    (torch's, BLAS, OpenMP) as they are or limited to `n_threads`."""
    index = Index.for_store(store, device="cpu")
    index._encoder = encoder  # the synthetic store records no real weights: skip the check
    ids, vectors = flat_vectors(store.faiss_index("audio"))
    query = encoder.embed_text([QUERIES[0]])[0]
    turn = iter(range(10**9))

    def end_to_end():
        index.search(text=QUERIES[next(turn) % len(QUERIES)], target="audio", k=K)

    def encode():
        encoder.embed_text([QUERIES[next(turn) % len(QUERIES)]])

    def vector_search():  # the engine's exact path over the flat index
        return engine._exact_top(ids, vectors, query, K, None)

    def from_vector():  # the engine from a query vector: vector search + metadata
        return search(store, query, "audio", K)

    found = [i for i, _ in vector_search()]

    def metadata():
        engine._metadata(store, found)

    def bare():
        scores = vectors @ query
        top = np.argpartition(-scores, K)[:K]
        return ids[top[np.argsort(-scores[top])]]

    assert [h.item_id for h in from_vector()] == list(bare()) == found
    row = {"items": len(ids), "threads": n_threads or "as is"}
    with threads(n_threads):
        for name, fn in (("end_to_end", end_to_end), ("text_encoding", encode),
                         ("vector_search", vector_search), ("metadata", metadata),
                         ("search_from_vector", from_vector), ("bare_numpy", bare)):  # fmt: skip
            row[f"{name}_p50_ms"], row[f"{name}_p95_ms"] = percentiles(timed(fn, repeats))
    row["ratio_to_encoding_plus_bare"] = row["end_to_end_p50_ms"] / (
        row["text_encoding_p50_ms"] + row["bare_numpy_p50_ms"]
    )
    return row


# --- approximate indexes --------------------------------------------------------------------


def build_ann(directory: Path, store: Store, factory: str, train_size: int, seed: int = 0):
    """(index, build record). A store no larger than the training sample is rebuilt and
    published with `Writer.rebuild` (what `xsearch index rebuild --factory` runs); a larger
    one gets the same index type trained on a random sample, filled in memory."""
    ids, vectors = flat_vectors(store.faiss_index("audio"))
    rss0, t0 = rss_gb(), time.perf_counter()
    if len(ids) <= train_size:
        with Writer(directory, store.manifest.model) as writer:
            rebuilt = writer.rebuild({"audio": writer.store.embeddings("audio")}, factory)
        index = rebuilt.faiss_index("audio")
        total = time.perf_counter() - t0
        record = {"built_with": "Writer.rebuild", "train_s": None, "add_s": None}
    else:
        index = new_index(vectors.shape[1], factory)
        rng = np.random.default_rng(seed)
        sample = vectors[np.sort(rng.choice(len(ids), train_size, replace=False))]
        index.train(sample)
        del sample
        train_s = time.perf_counter() - t0
        update(index, np.empty(0, np.int64), ids, vectors)
        total = time.perf_counter() - t0
        record = {"built_with": "new_index + train on a sample + update", "train_s": train_s,
                  "add_s": total - train_s}  # fmt: skip
    record.update(build_s=total, train_size=min(train_size, len(ids)),
                  index_rss_gb=max(rss_gb() - rss0, 0.0), loadavg=load())  # fmt: skip
    return index, record


def exact_baseline(store: Store, queries: np.ndarray, truth: np.ndarray) -> dict:
    """Single-query exact search over the flat index: the engine's vector path and its
    search(), each with the thread pools as they are and with one thread."""
    ids, vectors = flat_vectors(store.faiss_index("audio"))
    vec = both_modes(lambda q: [i for i, _ in engine._exact_top(ids, vectors, q, K, None)],
                     queries, "vector")  # fmt: skip
    eng = both_modes(lambda q: [h.item_id for h in search(store, q, "audio", K)], queries,
                     "engine")  # fmt: skip
    recall = recall_at_k(eng.pop("_found"), truth[: len(queries)])
    return {"queries": len(queries), "loadavg": load(), "recall_at_10": recall,
            **{k: v for k, v in {**vec, **eng}.items() if not k.startswith("_")}}  # fmt: skip


def sweep(store: Store, index, queries: np.ndarray, truth: np.ndarray, exact: dict,
          engine_queries: int, grid: dict[str, list[int]]) -> list[dict]:  # fmt: skip
    """Recall and single-query speed for each knob setting (and re-ranking factor)."""
    inner = faiss.downcast_index(faiss.downcast_index(index).index)
    refine = inner if isinstance(inner, faiss.IndexRefine) else None
    base = faiss.downcast_index(refine.base_index) if refine is not None else inner
    if isinstance(base, faiss.IndexIVF):
        knob, values = "nprobe", [v for v in grid["nprobes"] if v <= base.nlist]
    elif isinstance(base, faiss.IndexHNSW):
        knob, values = "ef", grid["efs"]
    else:
        raise SystemExit(f"not an approximate index: {type(base).__name__}")
    rows = []
    with index_in(store, index):
        for k_factor in grid["k_factors"] if refine is not None else (None,):
            recalls = []
            for value in values:
                options = SearchOptions(**{knob: value}, k_factor=k_factor)
                params = engine.search_parameters(index, None, options)

                def vector(q, params=params):
                    return [int(i) for i in index.search(q[None, :], K, params=params)[1][0]]

                vec = both_modes(vector, queries, "vector")
                eng = both_modes(
                    lambda q, o=options: [h.item_id for h in search(store, q, "audio", K, o)],
                    queries[:engine_queries], "engine",
                )  # fmt: skip
                found = vec.pop("_found")
                same = np.mean([e == v for e, v in zip(eng.pop("_found"), found)])
                row = {knob: value, "k_factor": k_factor,
                       "recall_at_10": recall_at_k(found, truth),
                       "recall_at_10_1t": recall_at_k(vec.pop("_found_1t"), truth),
                       "engine_same_as_vector": float(same)}  # fmt: skip
                eng.pop("_found_1t")
                row.update(vec, **eng)
                row.update(speedups(row, exact))
                rows.append(row)
                recalls.append(row["recall_at_10"])
                saturated = len(recalls) >= 3 and recalls[-1] - recalls[-3] < 0.003
                if recalls[-1] >= 0.995 or saturated:  # more breadth buys nothing here
                    break
    return rows


def speedups(row: dict, exact: dict) -> dict:
    """queries/s over exact: in the same thread mode, and each at its better mode."""
    out = {}
    for part in ("vector", "engine"):
        for suffix in ("", "_1t"):
            out[f"{part}_speedup{suffix}"] = (
                row[f"{part}_qps{suffix}"] / exact[f"{part}_qps{suffix}"]
            )
        ann = max(row[f"{part}_qps"], row[f"{part}_qps_1t"])
        out[f"{part}_speedup_best"] = ann / max(exact[f"{part}_qps"], exact[f"{part}_qps_1t"])
    return out


def best(rows: list[dict], target: float = 0.95) -> dict | None:
    """The fastest setting (engine queries/s, thread pools as they are) with recall@10 >=
    `target`."""
    good = [r for r in rows if r["recall_at_10"] >= target]
    return max(good, key=lambda r: r["engine_qps"]) if good else None


def smallest(rows: list[dict], knob: str, target: float = 0.95) -> list[dict]:
    """Per k_factor, the smallest knob value with recall@10 >= `target`."""
    out = {}
    for r in rows:
        if r["recall_at_10"] >= target and r["k_factor"] not in out:
            out[r["k_factor"]] = {knob: r[knob], "k_factor": r["k_factor"],
                                  "recall_at_10": r["recall_at_10"]}  # fmt: skip
    return list(out.values())


def ann_part(directory: Path, store: Store, mixture: Mixture, factories: list[str],
             args, save: Callable[[dict], None]) -> dict:  # fmt: skip
    """Part 2 on one store: ground truth, then each factory's build and sweep (`save` is
    called with the part after each factory)."""
    ids, vectors = flat_vectors(store.faiss_index("audio"))
    queries = mixture.queries(args.ann_queries)
    t0 = time.perf_counter()
    positions, scores = exact_top(vectors, queries, 100)
    truth = ids[positions[:, :K]]
    result = {"items": len(ids), "queries": len(queries),
              "ground_truth_s": time.perf_counter() - t0,
              "neighbours": neighbour_stats(vectors, scores), "indexes": []}  # fmt: skip
    for factory in factories:
        exact = exact_baseline(store, queries[: args.exact_queries], truth)
        index, build = build_ann(directory, store, factory, args.train_size)
        grid = {name: [int(v) for v in getattr(args, name).split(",")]
                for name in ("nprobes", "efs", "k_factors")}  # fmt: skip
        rows = sweep(store, index, queries, truth, exact, args.engine_queries, grid)
        del index
        knob = "nprobe" if "nprobe" in rows[0] else "ef"
        entry = {"factory": factory, **build, "exact": exact,
                 "knob": knob, "sweep": rows, "best": best(rows),
                 "smallest": smallest(rows, knob), "peak_rss_gb": peak_rss_gb()}  # fmt: skip
        result["indexes"].append(entry)
        print_ann(result["items"], entry)
        save(result)
    return result


# --- tables ---------------------------------------------------------------------------------


def pair(a: float, b: float, fmt: str = ".0f") -> str:
    return f"{a:{fmt}} / {b:{fmt}}"


def print_latency(rows: list[dict], config: str) -> None:
    table = Table(title=f"text query latency, ms p50 / p95 ({config}, CPU, exact index)")
    parts = ("end_to_end", "text_encoding", "vector_search", "metadata", "search_from_vector",
             "bare_numpy")  # fmt: skip
    for col in ("items", "threads", "end to end", "text encoding", "vector search", "metadata",
                "search() from vector", "bare numpy X@q", "e2e / (enc + bare)"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in rows:
        cells = [pair(r[f"{k}_p50_ms"], r[f"{k}_p95_ms"], ".1f") for k in parts]
        table.add_row(f"{r['items']:,}", str(r["threads"]), *cells,
                      f"{r['ratio_to_encoding_plus_bare']:.2f}")  # fmt: skip
    console.print(table)


def print_ann(items: int, entry: dict) -> None:
    ex, knob = entry["exact"], entry["knob"]
    train = f", trained in {entry['train_s']:.0f} s" if entry["train_s"] is not None else ""
    title = (
        f"{entry['factory']} on {items:,} items: built in {entry['build_s']:.0f} s{train} "
        f"({entry['built_with']}). Exact, q/s as is / 1 thread: vector "
        f"{pair(ex['vector_qps'], ex['vector_qps_1t'], '.1f')}, search() "
        f"{pair(ex['engine_qps'], ex['engine_qps_1t'], '.1f')}"
    )
    table = Table(title=title)
    for col in (knob, "k_factor", "recall@10", "vector ms p50", "vector q/s (as is / 1t)",
                "x exact (as is / best)", "search() q/s (as is / 1t)",
                "x exact (as is / best)"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in entry["sweep"]:
        table.add_row(
            str(r[knob]), str(r["k_factor"] or "-"), f"{r['recall_at_10']:.3f}",
            f"{r['vector_p50_ms']:.2f}", pair(r["vector_qps"], r["vector_qps_1t"]),
            pair(r["vector_speedup"], r["vector_speedup_best"], ".1f"),
            pair(r["engine_qps"], r["engine_qps_1t"]),
            pair(r["engine_speedup"], r["engine_speedup_best"], ".1f"),
            style="bold green" if r is entry["best"] else None,
        )  # fmt: skip
    console.print(table)


def print_summary(ann: list[dict]) -> None:
    table = Table(
        title="fastest setting with recall@10 >= 0.95: speed-up over exact single-query search "
        "(same run; thread pools as is / each at its better thread mode)"
    )
    for col in ("items", "factory", "build s", "setting", "recall@10", "vector x exact",
                "search() x exact", "smallest knob per k_factor"):  # fmt: skip
        table.add_column(col, justify="right")
    for part in ann:
        for e in part["indexes"]:
            b, knob = e["best"], e["knob"]
            first = (f"{part['items']:,}", e["factory"], f"{e['build_s']:.0f}")
            if b is None:
                table.add_row(*first, "none reaches 0.95", "", "", "", "")
                continue
            setting = f"{knob}={b[knob]}" + (f", k_factor={b['k_factor']}" if b["k_factor"] else "")
            small = ", ".join(
                f"{m[knob]}" + (f" (kf {m['k_factor']})" if m["k_factor"] else "")
                for m in e["smallest"]
            )
            table.add_row(
                *first, setting, f"{b['recall_at_10']:.3f}",
                pair(b["vector_speedup"], b["vector_speedup_best"], ".1f"),
                pair(b["engine_speedup"], b["engine_speedup_best"], ".1f"), small,
            )  # fmt: skip
    console.print(table)


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="latency part")
    parser.add_argument("--ann-sizes", default="1000000", help="approximate part ('' for none)")
    parser.add_argument("--ann-factories", default=FACTORIES, help="';'-separated")
    parser.add_argument("--ann-queries", type=int, default=500, help="recall and vector speed")
    parser.add_argument("--engine-queries", type=int, default=200, help="search() speed")
    parser.add_argument("--exact-queries", type=int, default=100, help="exact baseline")
    parser.add_argument("--nprobes", default=",".join(map(str, NPROBES)), help="IVF sweep")
    parser.add_argument("--efs", default=",".join(map(str, EFS)), help="HNSW sweep")
    parser.add_argument("--k-factors", default=",".join(map(str, K_FACTORS)), help="refine")
    parser.add_argument("--train-size", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--config", default="audioclip")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/query_speed.json")
    parser.add_argument(
        "--segments", type=int, default=20,
        help="the largest store is written in this many segments, searched so, then merged",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.ann_sizes, args.repeats = "2000", "2000", 3
        args.ann_factories, args.ann_queries, args.k_factors = QUICK_FACTORIES, 20, "4,32"
        args.engine_queries = args.exact_queries = 10
        args.nprobes, args.efs = "1,4,16", "16,64"
        args.segments = 4
    sizes = [int(s) for s in args.sizes.split(",") if s]
    ann_sizes = [int(s) for s in args.ann_sizes.split(",") if s]
    factories = [f.strip() for f in args.ann_factories.split(";") if f.strip()]
    mixture = Mixture()
    encoder = load_encoder("random", config=args.config, device="cpu")
    result = {
        "machine": {"cpus": os.cpu_count(), "faiss": faiss.__version__, "numpy": np.__version__,
                    "faiss_threads": faiss.omp_get_max_threads(), "loadavg_start": load()},
        "config": args.config, "data": mixture.recipe(), "rows": [], "rows_1_thread": [], "ann": [],
        "segments": [],
    }  # fmt: skip

    def save(ann_part_so_far: dict | None = None) -> None:
        ann = result["ann"] + ([ann_part_so_far] if ann_part_so_far else [])
        result["machine"].update(loadavg_now=load(), peak_rss_gb=peak_rss_gb())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**result, "ann": ann}, indent=2))

    with tempfile.TemporaryDirectory(prefix="xsearch-query-") as tmp:
        for n in sorted(set(sizes) | set(ann_sizes)):
            directory = Path(tmp) / f"store-{n}"
            split = args.segments if n == max(sizes or ann_sizes) else 0
            per_commit = -(-n // split) if split > 1 else 200_000
            commit_s = clustered_store(directory, mixture, n, per_commit)
            console.print(f"{n:,} items: store written in {commit_s:.0f} s, load {load()}")
            segmented = Store.open(directory)
            t0 = time.perf_counter()
            with Writer(directory, segmented.manifest.model) as writer:
                writer.compact(full_merge())  # one segment, what the parts below time
            merge_s = time.perf_counter() - t0
            store = Store.open(directory)
            if split > 1:
                row = segments_part(segmented, store, mixture, args.repeats)
                row["merge_s"] = merge_s
                result["segments"].append(row)
                console.print(
                    f"{n:,} items in {row['segments']} segments: search p50 "
                    f"{row['segmented_p50_ms']:.1f} ms, in one {row['one_segment_p50_ms']:.1f} "
                    f"ms: ratio {row['ratio_p50']:.3f} (merged into one in {merge_s:.0f} s)"
                )
                save()
            del segmented
            if n in sizes:
                for key, n_threads in (("rows", None), ("rows_1_thread", 1)):
                    row = latency(store, encoder, args.repeats, n_threads)
                    row.update(store_commit_s=commit_s, loadavg=load(), peak_rss_gb=peak_rss_gb())
                    result[key].append(row)
                print_latency(result["rows"] + result["rows_1_thread"], args.config)
                save()
            if n in ann_sizes:
                result["ann"].append(ann_part(directory, store, mixture, factories, args, save))
            del store
            shutil.rmtree(directory)
    if result["ann"]:
        print_summary(result["ann"])
    save()
    console.print(f"wrote {args.out} (peak memory {peak_rss_gb():.1f} GB)")


if __name__ == "__main__":
    main()
