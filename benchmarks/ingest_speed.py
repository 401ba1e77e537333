"""End-to-end ingest throughput against the model alone, and store open/commit costs.

Part 1 generates videos with sound (320x240, 5 s) and 10 s audio files, then measures
- model-only items/s: the same items, decoded beforehand, embedded in the same batches;
- end-to-end items/s: `ingest` of the folder into a fresh index (decode workers, hashing,
  embedding, commit);
- pipeline efficiency = end-to-end / model-only (the target is >= 0.8 on 2 cores);
- decode share: the time to decode every file in one process, over the end-to-end time.
Part 2 writes synthetic stores (vectors written directly) of growing size and times a full
commit; opening a reader (the manifest), its first query (the segment's index checked and
loaded) and its tables; a one-file incremental commit (five, the median reported); and the
reader following those commits to its next answer. `--grow N` ingests N synthetic items from
empty in commits of `--commit-items`, merging as ingest does: the store's total time, merges,
segment counts and the growth exponent.

    .venv/bin/python benchmarks/ingest_speed.py [--videos 8] [--audios 8] [--workers 2]
        [--model audioclip] [--store-sizes 10000,100000] [--store-only] [--out results.json]
        [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing xsearch
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.synthetic import audio_changes  # noqa: E402
from xsearch.ingest.decode import decode_file  # noqa: E402
from xsearch.ingest.pipeline import IngestOptions, decode_settings, ingest  # noqa: E402
from xsearch.ingest.scan import find_files  # noqa: E402
from xsearch.models import load_encoder  # noqa: E402
from xsearch.samples import audio_samples, write_video, write_wav  # noqa: E402
from xsearch.search.engine import nearest  # noqa: E402
from xsearch.store.store import Changes, Store, Writer  # noqa: E402

console = Console()


def make_media(folder: Path, videos: int, audios: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tones = list(audio_samples(seconds=10.0).values())
    for i in range(videos):
        write_video(folder / f"video_{i:03d}.mp4", seconds=5.0)
    for i in range(audios):
        # distinct content per file, or the content hash would skip the copies
        wave = np.roll(tones[i % len(tones)], 997 * i) * (0.5 + 0.4 * (i % 5) / 5)
        write_wav(folder / f"audio_{i:03d}.wav", wave)
    for i in range(videos):  # make every video's bytes differ too
        with open(folder / f"video_{i:03d}.mp4", "ab") as f:
            f.write(i.to_bytes(4, "little"))


def model_only(files: list[Path], encoder) -> tuple[float, int, float]:
    """(seconds embedding, items, seconds decoding) with everything decoded beforehand, for
    the model's inputs exactly as ingest decodes them (image size, sample rate, windows)."""
    settings = decode_settings(IngestOptions(), encoder)
    names = ("image_size", "sample_rate", "image_norm", "resampler", "merge_tail")
    options = {k: settings[k] for k in names}
    window = IngestOptions().window_for(encoder.spec)
    t0 = time.perf_counter()
    decoded = [decode_file(str(p), window_seconds=window, **options) for p in files]
    decode_s = time.perf_counter() - t0
    images = [d.image for d in decoded if d.image is not None]
    waves = [w.wave for d in decoded for w in d.audio]
    t0 = time.perf_counter()
    if images:
        encoder.embed("image", images)
    encoder.embed("audio", waves)
    return time.perf_counter() - t0, len(images) + len(waves), decode_s


def pipeline_part(args, workdir: Path) -> dict:
    media = workdir / "media"
    make_media(media, args.videos, args.audios)
    files = list(find_files([media]))
    encoder = load_encoder("random", config=args.config, device="cpu", batch_size=args.batch_size)
    model_only(files[:2], encoder)  # warm-up
    model_s, items, decode_s = model_only(files, encoder)
    t0 = time.perf_counter()
    report = ingest(files, workdir / "index", encoder, IngestOptions(workers=args.workers))
    e2e_s = time.perf_counter() - t0
    e2e_items = sum(report.items.values())
    assert e2e_items == items, (e2e_items, items)
    return {
        "files": len(files),
        "items": items,
        "model_only_items_per_s": items / model_s,
        "end_to_end_items_per_s": items / e2e_s,
        "pipeline_efficiency": model_s / e2e_s,
        "decode_share": decode_s / e2e_s,
        "end_to_end_s": e2e_s,
        "model_only_s": model_s,
        "decode_in_process_s": decode_s,
        "waiting_for_decode_s": report.decode_seconds,
    }


MODEL = {"encoder": "audioclip", "config": "audioclip", "weights": "synthetic"}


ONE_FILE_COMMITS = 5


def synthetic_store(directory: Path, n: int) -> float:
    """Commit `n` audio items of `n // 10` assets in one generation; returns seconds."""
    with Writer(directory, MODEL) as writer:
        changes = synthetic_changes(writer, n, np.random.default_rng(0))
        t0 = time.perf_counter()
        writer.commit(changes)
    return time.perf_counter() - t0


def synthetic_changes(writer: Writer, n: int, rng: np.random.Generator, dim: int = 1024) -> Changes:
    """`n` new audio items (10 per asset) with random unit vectors, as an ingest would add them."""
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return audio_changes(writer, vectors)


def grow_part(total: int, per_commit: int, workdir: Path) -> dict:
    """An ingest of `total` synthetic items in commits of `per_commit`, from an empty store:
    the store's time (commits only) as it grows, and its growth exponent b (time ~ items^b)
    between a tenth of `total` and all of it."""
    rng = np.random.default_rng(0)
    directory = workdir / "grow"
    elapsed = merging = 0.0
    merges, most_segments, checkpoints = 0, 0, []
    with Writer(directory, MODEL) as writer:
        while writer.next_item_id < total:
            changes = synthetic_changes(writer, min(per_commit, total - writer.next_item_id), rng)
            t0 = time.perf_counter()
            writer.commit(changes)
            t1 = time.perf_counter()
            merges += len(writer.compact())  # as ingest does after each commit
            t2 = time.perf_counter()
            elapsed += t2 - t0
            merging += t2 - t1
            segments = len(writer.store.manifest.segments)
            most_segments = max(most_segments, segments)
            checkpoints.append(
                {"items": writer.next_item_id, "store_s": elapsed, "merge_s": merging,
                 "segments": segments}
            )  # fmt: skip
    shutil.rmtree(directory)
    tenth = min(checkpoints, key=lambda c: abs(c["items"] - total / 10))
    exponent = np.log(elapsed / tenth["store_s"]) / np.log(total / tenth["items"])
    return {"items": total, "per_commit": per_commit, "commits": len(checkpoints),
            "store_s": elapsed, "merge_s": merging, "merges": merges,
            "segments": checkpoints[-1]["segments"], "most_segments": most_segments,
            "growth_exponent": float(exponent),
            "checkpoints": checkpoints[:: max(1, len(checkpoints) // 20)]}  # fmt: skip


def store_part(sizes: list[int], workdir: Path) -> list[dict]:
    rows = []
    for n in sizes:
        directory = workdir / f"store-{n}"
        commit_s = synthetic_store(directory, n)
        query = np.random.default_rng(2).standard_normal(1024).astype(np.float32)
        t0 = time.perf_counter()
        store = Store.open(directory)  # the manifest alone
        open_s = time.perf_counter() - t0
        nearest(store, query, "audio", 10)  # checks and loads the segment's index
        first_query_s = time.perf_counter() - t0
        _ = store.items, store.assets
        assert store.count("audio") == n
        loaded_s = time.perf_counter() - t0  # what opening cost before segments
        runs = []
        for seed in range(ONE_FILE_COMMITS):  # one file each: the median is reported
            t0 = time.perf_counter()
            with Writer(directory, store.manifest.model) as writer:
                writer.commit(synthetic_changes(writer, 1, np.random.default_rng(seed)))
            runs.append(time.perf_counter() - t0)
        incremental_s = float(np.median(runs))
        t0 = time.perf_counter()  # the reader follows those commits and answers again
        store = store.follow(Store.open(directory).manifest)
        nearest(store, query, "audio", 10)
        follow_s = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
        rows.append(
            {"items": n, "first_commit_s": commit_s, "open_s": open_s,
             "first_query_s": first_query_s, "open_and_load_s": loaded_s,
             "incremental_commit_s": incremental_s, "incremental_commit_runs_s": runs,
             "follow_and_query_s": follow_s,
             "bytes": size}
        )  # fmt: skip
        shutil.rmtree(directory)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--audios", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--model", "--config", dest="config", default="audioclip", help="model name"
    )
    parser.add_argument("--store-sizes", default="10000,100000")
    parser.add_argument(
        "--store-only", action="store_true", help="skip part 1 (the model): the store alone"
    )
    parser.add_argument(
        "--grow", type=int, default=0, metavar="ITEMS",
        help="also ingest ITEMS synthetic items from empty, in commits of --commit-items",
    )  # fmt: skip
    parser.add_argument("--commit-items", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ingest_speed.json")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.videos, args.audios, args.store_sizes = 2, 2, "1000"
    with tempfile.TemporaryDirectory(prefix="xsearch-bench-") as tmp:
        pipe = None if args.store_only else pipeline_part(args, Path(tmp))
        stores = store_part([int(s) for s in args.store_sizes.split(",") if s.strip()], Path(tmp))
        grow = grow_part(args.grow, args.commit_items, Path(tmp)) if args.grow > 0 else None

    if pipe is not None:
        table = Table(title=f"ingest ({args.config}, {args.workers} decode workers, CPU)")
        for col in ("files", "items", "model-only items/s", "end-to-end items/s", "efficiency",
                    "decode share"):  # fmt: skip
            table.add_column(col, justify="right")
        table.add_row(
            str(pipe["files"]), str(pipe["items"]), f"{pipe['model_only_items_per_s']:.2f}",
            f"{pipe['end_to_end_items_per_s']:.2f}", f"{pipe['pipeline_efficiency']:.2f}",
            f"{pipe['decode_share']:.1%}",
        )  # fmt: skip
        console.print(table)
    st = Table(title="store (synthetic audio items, 1024-d, exact FAISS index)")
    for col in ("items", "first commit s", "open s", "open + 1st query s", "+ tables s",
                "+1 file commit s", "follow + query s", "MB on disk"):  # fmt: skip
        st.add_column(col, justify="right")
    for r in stores:
        st.add_row(
            f"{r['items']:,}", f"{r['first_commit_s']:.2f}", f"{r['open_s']:.4f}",
            f"{r['first_query_s']:.3f}", f"{r['open_and_load_s']:.3f}",
            f"{r['incremental_commit_s']:.3f}", f"{r['follow_and_query_s']:.3f}",
            f"{r['bytes'] / 1e6:.0f}",
        )  # fmt: skip
    console.print(st)
    result = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpu": platform.processor()},
        "config": args.config, "workers": args.workers, "pipeline": pipe, "store": stores,
        "grow": grow,
    }  # fmt: skip
    if grow is not None:
        console.print(
            f"ingest of {grow['items']:,} synthetic items in {grow['commits']} commits of "
            f"{grow['per_commit']:,}: {grow['store_s']:.1f} s in the store ("
            f"{grow['merge_s']:.1f} s in {grow['merges']} merges), {grow['segments']} segments "
            f"(at most {grow['most_segments']}), growth exponent "
            f"{grow['growth_exponent']:.2f} (1.0: linear)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
