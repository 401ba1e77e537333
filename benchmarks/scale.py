"""Scale: streamed index builds and approximate search on synthetic stores of millions of items.

For each size N (`--sizes`, default 1M and 3M; 10M needs 41 GB of embeddings), a store of N
audio items is written directly: the vectors (query_speed.py's `Mixture`: clustered unit
vectors shaped like CLIP embeddings, seeded) go into Parquet parts of 262,144 rows, with the
item and asset tables, published as one generation by the store's Writer with no FAISS index
(a commit through `Writer.commit` would build an exact index of every vector). Then:
- ground truth: exact top 10 of `--queries` held-out queries, streamed over the stored parts
  (numpy, all queries at once);
- exact baseline (N <= `--exact-max`): `xsearch index rebuild --factory Flat`'s path, and
  single-query searches through the engine's `search()` (its exact numpy path);
- each factory of `--factories` (";"-separated; "+disk" keeps the IVF lists on disk): the
  streamed rebuild (`xsearch.store.rebuild.rebuild`, what `xsearch index rebuild` runs:
  training sample, train, add), then queries one at a time through the engine's `search()`
  with SearchOptions(nprobe=...) for growing nprobe until recall@10 >= `--target`.
recall@10 = |engine top 10 & exact top 10| / 10, averaged over the queries.

Every phase runs in a child process, whose peak resident memory (ru_maxrss, from os.wait4) is
the phase's peak memory; serving memory is also split into anonymous and file-backed pages
(/proc/self/status), since an on-disk index's lists are mapped file pages. The growth from the
smallest to the largest size is reported per quantity as an exponent b (cost ~ N^b), and
extrapolated to 10M and 100M items: extrapolations, labelled as such, not measurements.

    .venv/bin/python benchmarks/scale.py [--sizes 1000000,3000000]
        [--factories "IVF2048,SQ8;IVF2048,SQ8+disk"] [--queries 200] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing xsearch
    sys.path.insert(0, str(ROOT))

import xsearch  # noqa: E402, F401  first: it sets the thread pools' spin limits (see there)

# isort: split
import numpy as np  # noqa: E402

K = 10
PART_ROWS = 262_144  # rows per embeddings part
ROW_GROUP = 65_536  # rows per Parquet row group (256 MB of 1024-d float32)
MODEL = {"encoder": "audioclip", "config": "audioclip", "weights": "synthetic"}
FACTORIES = "IVF2048,SQ8;IVF2048,SQ8+disk"
NPROBES = "1,2,4,8,16,32,64,128,256,512"
EXTRAPOLATE_TO = (10_000_000, 100_000_000)


# --- phases (each runs in its own process) ---------------------------------------------------


def mixture(spec: dict):
    from benchmarks.query_speed import Mixture

    return Mixture(dim=spec["dim"], centres=spec["centres"])


def phase_write(spec: dict) -> dict:
    """Write the store: embeddings parts, items and assets tables, one generation."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xsearch.store import tables
    from xsearch.store.draft import Draft
    from xsearch.store.manifest import Segment
    from xsearch.store.segments import segment_role
    from xsearch.store.store import Writer

    directory, n = Path(spec["dir"]), spec["n"]
    t0 = time.perf_counter()
    gen_s = 0.0
    with Writer(directory, MODEL) as writer:
        draft = Draft(writer, writer.store.generation + 1)
        gen = draft.generation
        data = directory / "data"
        ids = writer.allocate_items(n)
        first_asset = writer.next_asset_id
        n_assets = -(-n // 10)
        for _ in range(n_assets):
            writer.allocate_asset()
        asset_ids = np.arange(first_asset, first_asset + n_assets, dtype=np.int64)
        assets = pa.table(
            {
                "asset_id": asset_ids,
                "path": [f"/media/{a}.wav" for a in asset_ids.tolist()],
                "content_hash": [f"{a:032x}" for a in asset_ids.tolist()],
                "kind": pa.array(["audio"] * n_assets),
                "bytes": np.ones(n_assets, np.int64),
                "mtime": np.zeros(n_assets),
                "duration": np.full(n_assets, 100.0),
                "labels": pa.array([[]] * n_assets, type=pa.list_(pa.string())),
            }
        ).cast(tables.ASSETS)
        start = (ids % 10) * 10.0
        items = pa.table(
            {
                "item_id": ids,
                "asset_id": first_asset + ids // 10,
                "modality": pa.array(["audio"] * n),
                "start": start,
                "end": start + 10.0,
                "text": pa.nulls(n, pa.string()),
            }
        ).cast(tables.ITEMS)
        written = draft.written
        for role, table in (("assets", assets), ("items", items)):
            written[segment_role(gen, role)] = data / f"{role}-g{gen}.parquet"
            tables.write_parquet(table, written[segment_role(gen, role)])
        del assets, items
        parts: list[int] = []

        def flush(vectors: np.ndarray) -> None:
            done = sum(parts)
            path = data / f"emb-audio-g{gen}-p{len(parts):05d}.parquet"
            table = tables.embeddings_table(ids[done : done + len(vectors)], vectors)
            pq.write_table(table, path, compression="zstd", row_group_size=ROW_GROUP)
            with open(path, "rb+") as f:
                os.fsync(f.fileno())
            written[segment_role(gen, f"embeddings/audio/p{len(parts):05d}")] = path
            parts.append(len(vectors))

        pending = np.empty((0, spec["dim"]), np.float32)
        blocks = iter(mixture(spec).blocks(n))
        while True:
            t = time.perf_counter()
            block = next(blocks, None)
            gen_s += time.perf_counter() - t
            if block is not None:
                pending = np.concatenate([pending, block])
            while len(pending) >= PART_ROWS or (block is None and len(pending)):
                flush(pending[:PART_ROWS])
                pending = pending[PART_ROWS:]
            if block is None:
                break
        done, part = sum(parts), len(parts)
        assert done == n, (done, n)
        # Published like a commit's segment (checksummed, one manifest swap), without the
        # FAISS index `commit` would build: `rebuild` makes it. Writer._publish is internal.
        draft.segments.append(Segment(gen, rows=n, live={"audio": n}, assets=n_assets))
        writer._publish(draft)
    return {
        "write_s": time.perf_counter() - t0,
        "draw_s": gen_s,
        "parts": part,
        "store_bytes": _tree_bytes(directory),
    }


def phase_truth(spec: dict) -> dict:
    """Exact top K of the queries, streamed over the stored parts; saved for the others."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xsearch.store.store import Store
    from xsearch.store.tables import embeddings_arrays

    store = Store.open(Path(spec["dir"]))
    queries = mixture(spec).queries(spec["queries"])
    t0 = time.perf_counter()
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for role in store.embedding_roles("audio"):
        with pq.ParquetFile(store.path(role), buffer_size=8 << 20, pre_buffer=False) as part:
            for batch in part.iter_batches(65_536, use_threads=False):
                ids, vectors = embeddings_arrays(pa.Table.from_batches([batch]))
                s = queries @ vectors.T
                top = np.argpartition(-s, K - 1, axis=1)[:, :K]
                best_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], axis=1)
                best_i = np.concatenate([best_i, ids[top]], axis=1)
                keep = np.argsort(-best_s, axis=1, kind="stable")[:, :K]
                best_s = np.take_along_axis(best_s, keep, 1)
                best_i = np.take_along_axis(best_i, keep, 1)
    seconds = time.perf_counter() - t0
    np.save(spec["truth"], best_i)
    return {
        "truth_s": seconds,
        "exact_batched_qps": len(queries) / seconds,
        "cosine_1st": float(best_s[:, 0].mean()),
        "cosine_10th": float(best_s[:, -1].mean()),
    }


def phase_build(spec: dict) -> dict:
    """`xsearch index rebuild`'s streamed rebuild."""
    from xsearch.store.rebuild import RebuildOptions, rebuild

    options = RebuildOptions(
        factory=spec["factory"],
        train_sample=spec["train_sample"],
        batch_size=spec["batch_size"],
        on_disk=spec["on_disk"],
    )
    t0 = time.perf_counter()
    with PeakMemory() as peak:
        store, (report,) = rebuild(Path(spec["dir"]), options)
    build_s = time.perf_counter() - t0
    return {
        "build_s": build_s,
        "sample_s": report.sample_s,
        "train_s": report.train_s,
        "add_s": report.add_s,
        "train_sample": report.train_sample,
        "index_bytes": sum(report.files.values()),
        "files": report.files,
        "generation": store.generation,
        "store_bytes": _tree_bytes(Path(spec["dir"])),
        **peak.record(),
    }


def phase_query(spec: dict) -> dict:
    """Single queries through the engine's search(), nprobe growing until the target."""
    import faiss

    from xsearch.indexes.faiss_index import ivf_of, on_disk_lists
    from xsearch.search.engine import SearchOptions, search
    from xsearch.store.store import Store

    store = Store.open(Path(spec["dir"]))
    queries = mixture(spec).queries(spec["queries"])
    truth = np.load(spec["truth"])
    t0 = time.perf_counter()
    index = store.faiss_index("audio")  # verified (sha256) and loaded
    load_s = time.perf_counter() - t0
    search(store, queries[0], "audio", K)  # warm-up: metadata, reference sample
    ivf = ivf_of(index)
    knobs = [int(p) for p in spec["nprobes"].split(",")] if ivf is not None else [None]
    rows = []
    for nprobe in knobs:
        if nprobe is not None and nprobe > ivf.nlist:
            break
        options = SearchOptions(nprobe=nprobe)
        found, times = [], []
        for q in queries:
            t = time.perf_counter()
            found.append([h.item_id for h in search(store, q, "audio", K, options)])
            times.append(time.perf_counter() - t)
        params = faiss.SearchParametersIVF(nprobe=nprobe) if nprobe else None
        t = time.perf_counter()
        for q in queries:
            index.search(q[None, :], K, params=params)
        index_s = time.perf_counter() - t
        recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))
        rows.append(
            {
                "nprobe": nprobe,
                "recall_at_10": recall,
                "engine_qps": len(queries) / sum(times),
                "engine_p50_ms": float(np.median(times) * 1000),
                "index_qps": len(queries) / index_s,
            }
        )
        if recall >= spec["target"]:
            break
    memory = _memory()
    return {
        "load_s": load_s,
        "sweep": rows,
        "on_disk": on_disk_lists(index) is not None,
        "rss_anon_gb": memory.get("RssAnon", 0) / 1e6,
        "rss_file_gb": memory.get("RssFile", 0) / 1e6,
        "loadavg": os.getloadavg()[0],
    }


PHASES = {"write": phase_write, "truth": phase_truth, "build": phase_build, "query": phase_query}


class PeakMemory:
    """The largest anonymous and file-backed resident memory of this process while running
    (sampled every 0.2 s): mapped files (on-disk lists) are the kernel's cache, which it can
    evict, where anonymous memory is the process's own."""

    def __init__(self) -> None:
        import threading

        self.anon_kb = self.file_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            memory = _memory()
            self.anon_kb = max(self.anon_kb, memory.get("RssAnon", 0))
            self.file_kb = max(self.file_kb, memory.get("RssFile", 0))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def record(self) -> dict:
        return {"peak_anon_gb": self.anon_kb / 1e6, "peak_file_gb": self.file_kb / 1e6}


def _memory() -> dict[str, int]:
    """kB of this process's resident pages by kind (/proc/self/status)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def _tree_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


# --- the parent ------------------------------------------------------------------------------


def run_phase(name: str, spec: dict, work: Path) -> dict:
    """Run a phase in a child process: its result plus its peak memory and wall time."""
    spec_file = work / f"{name}-spec.json"
    result_file = work / f"{name}-result.json"
    spec_file.write_text(json.dumps(spec))
    result_file.unlink(missing_ok=True)
    t0 = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, __file__, "--phase", name, str(spec_file), str(result_file)], cwd=ROOT
    )
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"phase {name} failed (exit {child.returncode}): {spec}")
    result = json.loads(result_file.read_text())
    result.update(wall_s=time.perf_counter() - t0, peak_rss_gb=usage.ru_maxrss / 1e6)
    return result


def measure_size(n: int, args, work: Path) -> dict:
    directory = work / f"store-{n}"
    shutil.rmtree(directory, ignore_errors=True)
    base = {
        "dir": str(directory),
        "n": n,
        "dim": args.dim,
        "centres": args.centres,
        "queries": args.queries,
        "truth": str(work / f"truth-{n}.npy"),
    }
    need = n * args.dim * 4 * 1.15 + (2 << 30)
    free = shutil.disk_usage(work).free
    if free < need:
        return {"items": n, "skipped": f"needs {need / 1e9:.0f} GB of disk, {free / 1e9:.0f} free"}
    out = {"items": n, "loadavg_start": os.getloadavg()[0]}
    out["write"] = run_phase("write", base, work)
    say(
        f"{n:,}: written in {out['write']['write_s']:.0f} s "
        f"({out['write']['store_bytes'] / 1e9:.1f} GB)"
    )
    out["truth"] = run_phase("truth", base, work)
    out["indexes"] = []
    configs = [("Flat", False)] if n <= args.exact_max else []
    for f in args.factories.split(";"):
        f = f.strip()
        if f:
            configs.append((f.removesuffix("+disk"), f.endswith("+disk")))
    for factory, on_disk in configs:
        spec = {
            **base,
            "factory": factory,
            "on_disk": on_disk,
            "batch_size": args.batch_size,
            "train_sample": args.train_sample,
            "nprobes": args.nprobes,
            "target": args.target,
        }
        build = run_phase("build", spec, work)
        query = run_phase("query", spec, work)
        entry = {
            "factory": factory + (" (on disk)" if on_disk else ""),
            "on_disk": on_disk,
            "exact": factory == "Flat",
            "build": build,
            "query": query,
            "best": next((r for r in query["sweep"] if r["recall_at_10"] >= args.target), None),
        }
        out["indexes"].append(entry)
        best = entry["best"]
        say(
            f"{n:,} {entry['factory']}: built in {build['build_s']:.0f} s, "
            + (
                f"nprobe {best['nprobe']}: recall {best['recall_at_10']:.3f}, "
                f"{best['engine_qps']:.0f} q/s"
                if best
                else "target not reached"
            )
        )
    if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
    return out


def say(text: str) -> None:
    print(text, flush=True)


# --- growth ----------------------------------------------------------------------------------


SIZE_QUANTITIES = {  # name -> (value from a size's record, unit)
    "write_s": (lambda s: s["write"]["write_s"], "s"),
    "store_gb": (lambda s: s["write"]["store_bytes"] / 1e9, "GB"),
    "exact_batched_qps": (lambda s: s["truth"]["exact_batched_qps"], "q/s"),
}
INDEX_QUANTITIES = {  # name -> (value from an index entry, unit)
    "build_s": (lambda e: e["build"]["build_s"], "s"),
    "train_s": (lambda e: e["build"]["train_s"], "s"),
    "add_s": (lambda e: e["build"]["add_s"], "s"),
    "build_peak_gb": (lambda e: e["build"]["peak_rss_gb"], "GB"),
    "index_mb": (lambda e: e["build"]["index_bytes"] / 1e6, "MB"),
    "load_s": (lambda e: e["query"]["load_s"], "s"),
    "serve_peak_gb": (lambda e: e["query"]["peak_rss_gb"], "GB"),
    "nprobe_at_target": (lambda e: e["best"]["nprobe"] if e["best"] else None, ""),
    "engine_qps_at_target": (lambda e: e["best"]["engine_qps"] if e["best"] else None, "q/s"),
}


def growth(sizes: list[dict]) -> list[dict]:
    """Per quantity (of the store, or of an index): the values, exponent b (value ~ N^b)
    between the smallest and the largest size, and the values b extrapolates to."""
    measured = [s for s in sizes if "indexes" in s]
    if len(measured) < 2:
        return []
    small, large = measured[0], measured[-1]
    pairs = [
        ("store", name, unit, get(small), get(large))
        for name, (get, unit) in SIZE_QUANTITIES.items()
    ]
    for entry in large["indexes"]:
        first = next((e for e in small["indexes"] if e["factory"] == entry["factory"]), None)
        if first is not None:
            pairs += [
                (entry["factory"], name, unit, get(first), get(entry))
                for name, (get, unit) in INDEX_QUANTITIES.items()
            ]
    rows = []
    for what, name, unit, a, b in pairs:
        if not a or not b or a <= 0 or b <= 0:
            continue
        exponent = math.log(b / a) / math.log(large["items"] / small["items"])
        knob = name == "nprobe_at_target"  # a setting, not a cost: not extrapolated
        rows.append(
            {
                "of": what,
                "quantity": name,
                "unit": unit,
                "values": {str(small["items"]): a, str(large["items"]): b},
                "exponent": exponent,
                "extrapolated": {}
                if knob
                else {str(n): b * (n / large["items"]) ** exponent for n in EXTRAPOLATE_TO},
            }
        )
    return rows


def exact_speed(sizes: list[dict], size: dict) -> tuple[float | None, bool]:
    """Exact single-query q/s through search() at `size`: measured, else extrapolated from
    the largest smaller size where it was measured (a scan: time ~ N). (q/s, extrapolated)"""
    measured = [
        (s["items"], e["best"]["engine_qps"])
        for s in sizes
        if "indexes" in s and s["items"] <= size["items"]
        for e in s["indexes"]
        if e["exact"] and e["best"]
    ]
    if not measured:
        return None, False
    n, qps = max(measured)
    return qps * n / size["items"], n != size["items"]


# --- tables ----------------------------------------------------------------------------------


def print_tables(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    table = Table(
        title="scale: per size and index (single queries through search(); "
        f"recall@10 target {result['target']})"
    )
    cols = (
        "items",
        "index",
        "write s",
        "store GB",
        "build s (sample/train/add)",
        "build peak GB (anon/file)",
        "index MB",
        "load s",
        "nprobe",
        "recall@10",
        "search() q/s",
        "index q/s",
        "x exact",
        "serve peak GB (anon/file)",
    )
    for c in cols:
        table.add_column(c, justify="right")
    for size in result["sizes"]:
        if "skipped" in size:
            table.add_row(f"{size['items']:,}", "skipped: " + size["skipped"], *[""] * 12)
            continue
        exact_qps, extrapolated = exact_speed(result["sizes"], size)
        for e in size["indexes"]:
            b, q, best = e["build"], e["query"], e["best"] or {}
            table.add_row(
                f"{size['items']:,}",
                e["factory"],
                f"{size['write']['write_s']:.0f}",
                f"{size['write']['store_bytes'] / 1e9:.2f}",
                f"{b['build_s']:.0f} ({b['sample_s']:.0f}/{b['train_s']:.0f}/{b['add_s']:.0f})",
                f"{b['peak_rss_gb']:.2f}"
                + (
                    f" ({b['peak_anon_gb']:.2f}/{b['peak_file_gb']:.2f})"
                    if "peak_anon_gb" in b
                    else ""
                ),
                f"{b['index_bytes'] / 1e6:.0f}",
                f"{q['load_s']:.1f}",
                str(best.get("nprobe") or "-"),
                f"{best['recall_at_10']:.3f}" if best else "not reached",
                f"{best['engine_qps']:.1f}" if best else "",
                f"{best['index_qps']:.1f}" if best else "",
                f"{best['engine_qps'] / exact_qps:.1f}{'*' if extrapolated else ''}"
                if best and exact_qps
                else "",
                f"{q['peak_rss_gb']:.2f} ({q['rss_anon_gb']:.2f}/{q['rss_file_gb']:.2f})",
            )
    console.print(table)
    console.print(
        "* against exact search's q/s EXTRAPOLATED from the largest size where it was measured "
        "(x N_measured / N: a scan of every vector)"
    )
    if result["growth"]:
        sizes = [s["items"] for s in result["sizes"] if "indexes" in s]
        table = Table(
            title=f"growth from {sizes[0]:,} to {sizes[-1]:,} items: value ~ N^b; "
            "10M and 100M are EXTRAPOLATED from b, not measured"
        )
        for c in (
            "index",
            "quantity",
            f"{sizes[0]:,}",
            f"{sizes[-1]:,}",
            "b",
            "10M (extrapolated)",
            "100M (extrapolated)",
        ):
            table.add_column(c, justify="right")
        for g in result["growth"]:
            v = list(g["values"].values())
            x = [f"{e:.3g}" for e in g["extrapolated"].values()] or ["-", "-"]
            table.add_row(
                g["of"],
                f"{g['quantity']} ({g['unit']})" if g["unit"] else g["quantity"],
                f"{v[0]:.3g}",
                f"{v[1]:.3g}",
                f"{g['exponent']:.2f}",
                x[0],
                x[1],
            )
        console.print(table)


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,3000000")
    parser.add_argument("--factories", default=FACTORIES, help="';'-separated; '+disk': on disk")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--nprobes", default=NPROBES)
    parser.add_argument("--target", type=float, default=0.95, help="recall@10 to reach")
    parser.add_argument("--train-sample", type=int, default=None, help="default: the rule")
    parser.add_argument("--batch-size", type=int, default=32_768)
    parser.add_argument("--exact-max", type=int, default=1_500_000, help="largest exact index")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--centres", type=int, default=3000)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scale.json")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the sizes already in --out that this run does not measure (one size a run)",
    )
    parser.add_argument("--phase", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, spec_file, result_file = args.phase
        result = PHASES[name](json.loads(Path(spec_file).read_text()))
        Path(result_file).write_text(json.dumps(result))
        return
    if args.quick:
        args.sizes, args.factories, args.queries = "4000,12000", "IVF32,SQ8;IVF32,SQ8+disk", 30
        args.dim, args.centres, args.nprobes = 128, 100, "1,2,4,8,16,32"
    import faiss

    sizes = sorted(int(s) for s in args.sizes.split(",") if s)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "faiss": faiss.__version__,
            "loadavg_start": list(os.getloadavg()),
        },
        "target": args.target,
        "queries": args.queries,
        "dim": args.dim,
        "data": {"generator": "benchmarks/query_speed.py Mixture", "centres": args.centres},
        "part_rows": PART_ROWS,
        "row_group": ROW_GROUP,
        "sizes": [],
        "growth": [],
    }
    if args.merge and args.out.exists():
        earlier = json.loads(args.out.read_text())
        result["earlier_runs"] = [*earlier.get("earlier_runs", []), earlier["machine"]]
        kept = [s for s in earlier["sizes"] if s["items"] not in sizes]
    else:
        kept = []
    parent = args.workdir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xsearch-scale-", dir=parent) as tmp:
        for n in sizes:
            measured = [*result["sizes"], measure_size(n, args, Path(tmp))]
            result["sizes"] = sorted(kept + measured, key=lambda size: size["items"])
            kept = []
            result["growth"] = growth(result["sizes"])
            for size in result["sizes"]:
                if "indexes" in size:
                    qps, extrapolated = exact_speed(result["sizes"], size)
                    size["exact_engine_qps"] = qps
                    size["exact_engine_qps_extrapolated"] = extrapolated
            result["machine"]["loadavg_now"] = list(os.getloadavg())
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1))
    print_tables(result)
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
