"""Query latency on synthetic stores: a text query end to end, split into its parts.

For stores of 10k, 100k and 1M audio items (vectors written directly, exact FAISS index),
times `Index.search(text=...)` end to end and its parts (text encoding, vector search,
metadata lookup), next to a bare numpy matrix-vector product + top-k over the same vectors
in the same run. p50 and p95 over the repeats, in milliseconds.

    .venv/bin/python benchmarks/query_speed.py [--sizes 10000,100000,1000000] [--repeats 30]
        [--config audioclip] [--out results.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing xsearch
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.ingest_speed import synthetic_store  # noqa: E402
from xsearch.api import Index  # noqa: E402
from xsearch.models import load_encoder  # noqa: E402
from xsearch.search.engine import _metadata, search  # noqa: E402
from xsearch.store.store import Store  # noqa: E402

QUERIES = ["a dog barking", "rain on a tin roof", "church bells", "a car horn in traffic"]


def percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def measure(n: int, encoder, repeats: int, workdir: Path) -> dict:
    directory = workdir / f"store-{n}"
    synthetic_store(directory, n)
    store = Store.open(directory)
    index = Index(store, device="cpu")
    index.__dict__["encoder"] = encoder  # the synthetic store records no real weights
    faiss_index = store.faiss_index("audio")
    ids, vectors = store.embeddings("audio")
    query = encoder.embed_text([QUERIES[0]])[0]
    queries = iter(range(10**9))

    def end_to_end():
        index.search(text=QUERIES[next(queries) % len(QUERIES)], target="audio", k=10)

    def encode():
        encoder.embed_text([QUERIES[next(queries) % len(QUERIES)]])

    def vector_search():
        faiss_index.search(query[None, :], 10)

    found = [int(i) for i in faiss_index.search(query[None, :], 10)[1][0]]

    def metadata():
        _metadata(store, found)

    def bare():
        scores = vectors @ query
        top = np.argpartition(-scores, 10)[:10]
        return ids[top[np.argsort(-scores[top])]]

    assert [h.item_id for h in search(store, query, "audio", 10)] == list(bare())
    row = {"items": n}
    for name, fn in (("end_to_end", end_to_end), ("text_encoding", encode),
                     ("vector_search", vector_search), ("metadata", metadata),
                     ("bare_numpy", bare)):  # fmt: skip
        p50, p95 = percentiles(timed(fn, repeats))
        row[f"{name}_p50_ms"], row[f"{name}_p95_ms"] = p50, p95
    row["ratio_to_encoding_plus_bare"] = row["end_to_end_p50_ms"] / (
        row["text_encoding_p50_ms"] + row["bare_numpy_p50_ms"]
    )
    shutil.rmtree(directory)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--config", default="audioclip")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/query_speed.json")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats = "2000", 3
    encoder = load_encoder("random", config=args.config, device="cpu")
    rows = []
    with tempfile.TemporaryDirectory(prefix="xsearch-query-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            rows.append(measure(n, encoder, args.repeats, Path(tmp)))
    table = Table(title=f"text query latency, ms p50 / p95 ({args.config}, CPU, exact index)")
    for col in ("items", "end to end", "text encoding", "vector search", "metadata",
                "bare numpy X@q", "e2e / (enc + bare)"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in rows:
        parts = ("end_to_end", "text_encoding", "vector_search", "metadata", "bare_numpy")
        cells = [f"{r[f'{k}_p50_ms']:.1f} / {r[f'{k}_p95_ms']:.1f}" for k in parts]
        table.add_row(f"{r['items']:,}", *cells, f"{r['ratio_to_encoding_plus_bare']:.2f}")
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"config": args.config, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
