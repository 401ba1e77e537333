"""Reduced CPU precision against fp32: speed, closeness of the vectors, and search recall.

The full `audioclip` config with seeded random weights, prepared for inference, then one
copy per precision (`xsearch.models.precision`). For each modality this measures:

- speed: items/s of one model call (image 8 x 224 px, audio 2 x 5 s at 44.1 kHz, text 8
  short captions; inputs already tensors), the precisions interleaved round by round so that
  a busy moment hits them alike; the median, and the median of the per-round ratios to fp32;
- closeness: cosine of each precision's vectors to fp32's over the generated sets (min, mean);
- recall@10: a generated index (synthetic images: smooth colour fields with shapes; audio:
  mixtures of tones and noise), searched exactly by 50 queries (text -> audio: template
  captions; image -> image: fresh synthetic images), every vector at the precision under
  test; overlap of its top 10 with fp32's top 10, over 10.

    .venv/bin/python benchmarks/precision.py [--rounds 3] [--images 100] [--clips 100]
        [--clip-seconds 1] [--queries 50] [--threads N] [--out FILE] [--quick]

Random weights map different inputs to close vectors, so neighbours are nearer to ties than
with trained weights: the recall here is a pessimistic estimate (the table prints the fp32
gap between the 10th and 11th score beside it). The defaults take about 6 minutes on 2
cores, most of it bf16, which has no fast kernels on a CPU without AVX512-BF16 or AMX.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing xsearch
    sys.path.insert(0, str(ROOT))

import xsearch  # noqa: E402

xsearch.tune_threads()  # as the xsearch command does, before numpy and torch load

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks import run_main  # noqa: E402
from benchmarks.embed_speed import QUERIES, device_name  # noqa: E402
from xsearch.models import preprocess  # noqa: E402
from xsearch.models.checkpoint import build_model  # noqa: E402
from xsearch.models.config import get_config  # noqa: E402
from xsearch.models.inference import prepare_for_inference  # noqa: E402
from xsearch.models.precision import (  # noqa: E402
    PRECISIONS,
    precision_context,
    prepare_precision,
    quantizable_linears,
)

CPU = torch.device("cpu")
K = 10
SPEED_BATCH = {"image": 8, "audio": 2, "text": 8}
SPEED_AUDIO_SECONDS = 5.0

# Template captions for the text queries: 8 x 8 x 8 combinations, drawn without repeats.
_SOURCES = ["a dog", "a small bird", "an old car", "a crowd", "heavy rain", "a violin",
            "a train", "a child"]  # fmt: skip
_ACTIONS = ["barking", "singing", "passing by", "cheering", "falling", "playing a tune",
            "rumbling", "laughing"]  # fmt: skip
_PLACES = ["in a park", "at night", "on a busy street", "inside a hall", "on a tin roof",
           "far away", "in a tunnel", "by the sea"]  # fmt: skip


# --- synthetic inputs ------------------------------------------------------------------------


def synthetic_images(n: int, size: int, seed: int) -> list[Image.Image]:
    """Smooth random colour fields (a coarse grid of colours, upsampled) with 1-4 flat
    rectangles or discs on top: cheap, and varied at every scale."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = []
    for _ in range(n):
        grid = rng.integers(2, 6)
        coarse = rng.uniform(0, 255, (grid, grid, 3)).astype(np.float32)
        big = Image.fromarray(coarse.astype(np.uint8)).resize(
            (size, size), Image.Resampling.BICUBIC
        )
        img = np.asarray(big, dtype=np.float32).copy()
        for _ in range(rng.integers(1, 5)):
            cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.3)
            if rng.random() < 0.5:
                mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
            else:
                mask = (abs(xx - cx) < r) & (abs(yy - cy) < r * rng.uniform(0.3, 1.5))
            img[mask] = rng.uniform(0, 255, 3)
        out.append(Image.fromarray(img.clip(0, 255).astype(np.uint8)))
    return out


def synthetic_audio(n: int, seconds: float, rate: int, seed: int) -> list[np.ndarray]:
    """1-4 tones (random pitch, onset, decay, a little vibrato) over white noise of random
    level, int16 scale as the encoder takes."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate), dtype=np.float32) / rate
    out = []
    for _ in range(n):
        wave = rng.standard_normal(t.size).astype(np.float32) * rng.uniform(0.01, 0.3)
        for _ in range(rng.integers(1, 5)):
            freq = 110.0 * 2 ** rng.uniform(0, 5)
            vibrato = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(2, 7) * t)
            onset = rng.uniform(0, seconds / 2)
            env = np.where(t >= onset, np.exp(-(t - onset) * rng.uniform(0.3, 4)), 0.0)
            wave += rng.uniform(0.2, 1.0) * env * np.sin(2 * np.pi * freq * t * vibrato)
        out.append((wave / np.abs(wave).max() * 16000).astype(np.float32))
    return out


def captions(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(_SOURCES) * len(_ACTIONS) * len(_PLACES), n, replace=False)
    return [f"{_SOURCES[i // 64]} {_ACTIONS[i // 8 % 8]} {_PLACES[i % 8]}" for i in picks.tolist()]


# --- running a model at a precision ----------------------------------------------------------


def encode(model, precision: str, modality: str, x: torch.Tensor) -> np.ndarray:
    """One batch of prepared tensors -> L2-normalised float32 rows."""
    with torch.inference_mode(), precision_context(precision, CPU):
        if modality == "image":
            rows = model.encode_image(x)
        elif modality == "audio":
            rows = model.encode_audio(x)
        else:
            rows = model.encode_text(x)
    return torch.nn.functional.normalize(rows.float(), dim=-1).numpy()


def embed_all(model, precision: str, modality: str, batches: list[torch.Tensor]) -> np.ndarray:
    return np.concatenate([encode(model, precision, modality, b) for b in batches])


def image_batches(images: list[Image.Image], size: int, batch: int) -> list[torch.Tensor]:
    return [
        preprocess.image_tensor(images[i : i + batch], size).contiguous(
            memory_format=torch.channels_last
        )
        for i in range(0, len(images), batch)
    ]


def audio_batches(waves: list[np.ndarray], batch: int) -> list[torch.Tensor]:
    return [preprocess.audio_tensor(waves[i : i + batch]) for i in range(0, len(waves), batch)]


def top_k(queries: np.ndarray, index: np.ndarray, k: int = K) -> np.ndarray:
    """Exact inner-product search: ids of the k best rows of `index` per query, best first."""
    scores = queries @ index.T
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def recall_at_k(found: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per query: how many of the reference's top k are found, over k."""
    return np.array([len(set(f) & set(r)) / r.size for f, r in zip(found, reference)])


def ties(queries: np.ndarray, index: np.ndarray, k: int = K) -> dict[str, float]:
    """How near to ties the fp32 search is: the median gap between the k-th and (k+1)-th
    score, and the median spread of a query's scores, to set beside 1 - cosine."""
    scores = -np.sort(-(queries @ index.T), axis=1)
    return {
        "median_gap_k": float(np.median(scores[:, k - 1] - scores[:, k])),
        "median_spread": float(np.median(scores[:, 0] - scores[:, -1])),
    }


def cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    c = (a * b).sum(axis=1)  # both sides are unit rows
    return {"min": float(c.min()), "mean": float(c.mean())}


# --- the benchmark ---------------------------------------------------------------------------


def speed(models: dict, inputs: dict, rounds: int) -> list[dict]:
    """Interleaved timing: per round, one call of each precision per modality."""
    rows = []
    for modality, x in inputs.items():
        times: dict[str, list[float]] = {p: [] for p in models}
        for p, model in models.items():  # warm-up: oneDNN picks and caches its kernels
            encode(model, p, modality, x)
        for _ in range(rounds):
            for p, model in models.items():
                start = time.perf_counter()
                encode(model, p, modality, x)
                times[p].append(time.perf_counter() - start)
        batch = x.shape[0]
        for p in models:
            ratios = [f / t for f, t in zip(times["fp32"], times[p])]
            rows.append(
                {
                    "modality": modality,
                    "precision": p,
                    "batch": batch,
                    "items_per_s": batch / statistics.median(times[p]),
                    "speedup": statistics.median(ratios),  # fp32 time / this time, per round
                    "speedup_rounds": ratios,
                    "times_s": times[p],
                }
            )
    return rows


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = get_config("audioclip")
    torch.manual_seed(0)
    base = prepare_for_inference(build_model(cfg), CPU)
    # bf16 changes no weight: it shares the fp32 model. int8 gets a quantized copy.
    models = {p: prepare_precision(copy.deepcopy(base) if p == "int8" else base, p, CPU)
              for p in PRECISIONS}  # fmt: skip
    size, rate = cfg.vision.image_size, cfg.audio.sample_rate

    speed_inputs = {
        "image": image_batches(synthetic_images(SPEED_BATCH["image"], size, 1), size, 8)[0],
        "audio": audio_batches(
            synthetic_audio(SPEED_BATCH["audio"], SPEED_AUDIO_SECONDS, rate, 2), 2
        )[0],
        "text": preprocess.tokenize(QUERIES[: SPEED_BATCH["text"]], cfg.text.context_length),
    }
    started = time.perf_counter()
    speed_rows = speed(models, speed_inputs, args.rounds)
    log(args, f"speed: {time.perf_counter() - started:.0f} s")

    sets = {
        "image": image_batches(synthetic_images(args.images, size, 10), size, 8),
        "image queries": image_batches(synthetic_images(args.queries, size, 11), size, 8),
        "audio": audio_batches(synthetic_audio(args.clips, args.clip_seconds, rate, 12), 2),
        "text queries": [
            preprocess.tokenize(captions(args.queries, 13)[i : i + 8], cfg.text.context_length)
            for i in range(0, args.queries, 8)
        ],
    }
    vectors: dict[str, dict[str, np.ndarray]] = {p: {} for p in models}
    seconds: dict[str, dict[str, float]] = {p: {} for p in models}
    for name, batches in sets.items():
        modality = name.split()[0]
        for p, model in models.items():
            started = time.perf_counter()
            vectors[p][name] = embed_all(model, p, modality, batches)
            seconds[p][name] = time.perf_counter() - started
            log(args, f"{name} @ {p}: {seconds[p][name]:.1f} s")

    searches = {"text -> audio": ("text queries", "audio"),
                "image -> image": ("image queries", "image")}  # fmt: skip
    reference = {s: top_k(vectors["fp32"][q], vectors["fp32"][i]) for s, (q, i) in searches.items()}
    fp32_ties = {s: ties(vectors["fp32"][q], vectors["fp32"][i]) for s, (q, i) in searches.items()}
    quality = []
    for p in models:
        for name in sets:
            modality = name.split()[0]
            quality.append(
                {"kind": "cosine", "precision": p, "set": name, "modality": modality,
                 "n": len(vectors[p][name]), **cosines(vectors[p][name], vectors["fp32"][name])}
            )  # fmt: skip
        for search, (q, i) in searches.items():
            r = recall_at_k(top_k(vectors[p][q], vectors[p][i]), reference[search])
            quality.append(
                {"kind": "recall@10", "precision": p, "search": search, "queries": len(r),
                 "index_size": len(vectors[p][i]), "mean": float(r.mean()),
                 "min": float(r.min()), "fp32_scores": fp32_ties[search]}
            )  # fmt: skip

    return {
        "benchmark": "precision",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": "audioclip",
        "weights": "random (seed 0)",
        "machine": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device_name": device_name(CPU),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_flags": cpu_flags(),
            "threads": torch.get_num_threads(),
            "quantized_engine": torch.backends.quantized.engine,
        },
        "int8_quantized_linears": len(quantizable_linears(base)),
        "rounds": args.rounds,
        "speed": speed_rows,
        "quality": quality,
        "embed_seconds": seconds,
        "sets": {
            "images": args.images,
            "image_queries": args.queries,
            "audio_clips": args.clips,
            "clip_seconds": args.clip_seconds,
            "text_queries": args.queries,
        },
    }


def cpu_flags() -> list[str]:
    """The CPU features that decide whether bf16 or int8 can be fast."""
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in present]
    except OSError:
        pass
    return []


def log(args: argparse.Namespace, line: str) -> None:
    if not args.quiet:
        print(f"  {line}", flush=True)


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    m = result["machine"]
    console = Console()
    speed_table = Table(
        title=(
            f"precision: speed on {m['device_name']}, {m['threads']} threads, "
            f"{m['cpu_capability']} ({', '.join(m['cpu_flags']) or 'no flags read'})"
        )
    )
    for name in ("modality", "batch", "precision", "items/s", "x fp32 (median of rounds)"):
        speed_table.add_column(
            name, justify="left" if name in ("modality", "precision") else "right"
        )
    for r in result["speed"]:
        speed_table.add_row(
            r["modality"], str(r["batch"]), r["precision"], f"{r['items_per_s']:.2f}",
            f"{r['speedup']:.2f} ({min(r['speedup_rounds']):.2f}-{max(r['speedup_rounds']):.2f})",
        )  # fmt: skip
    console.print(speed_table)

    quality = Table(title="precision: closeness to fp32 (cosine) and recall@10 against fp32")
    for name in ("precision", "what", "n", "min", "mean"):
        quality.add_column(name, justify="left" if name in ("precision", "what") else "right")
    for r in result["quality"]:
        if r["precision"] == "fp32":
            continue
        if r["kind"] == "cosine":
            what, n = f"cosine, {r['set']}", str(r["n"])
        else:
            what, n = f"recall@10, {r['search']}", f"{r['queries']}q/{r['index_size']}"
        quality.add_row(r["precision"], what, n, f"{r['min']:.6f}", f"{r['mean']:.6f}")
    console.print(quality)
    for r in result["quality"]:
        if r["kind"] == "recall@10" and r["precision"] == "fp32":
            t = r["fp32_scores"]
            console.print(
                f"{r['search']}: fp32 gap between the 10th and 11th score {t['median_gap_k']:.2e}, "
                f"spread of a query's scores {t['median_spread']:.2e} (medians)"
            )
    s = result["sets"]
    console.print(
        f"speed: median of {result['rounds']} interleaved rounds after one warm-up, model "
        f"calls on prepared tensors. Index: {s['images']} images, {s['audio_clips']} clips of "
        f"{s['clip_seconds']:g} s; {s['text_queries']} queries a search; every vector at the "
        "precision under test. Random weights: pessimistic recall."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    p.add_argument("--images", type=int, default=100, help="images in the index (default 100)")
    p.add_argument("--clips", type=int, default=100, help="audio clips in the index (default 100)")
    p.add_argument("--clip-seconds", type=float, default=1.0, help="index clip length (default 1)")
    p.add_argument("--queries", type=int, default=50, help="queries per search (default 50)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "precision.json",
        help="write the results as JSON here (default benchmarks/results/precision.json)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, tiny sets")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.images, args.clips, args.clip_seconds, args.queries = 1, 24, 12, 1, 12
    if min(args.rounds, args.clips, args.queries) < 1 or args.clip_seconds <= 0:
        p.error("--rounds, --clips and --queries must be positive, --clip-seconds too")
    if args.images <= K or args.clips <= K:
        p.error(f"the index needs more than {K} images and clips")
    if args.queries > len(_SOURCES) * len(_ACTIONS) * len(_PLACES):
        p.error("--queries: at most 512 distinct captions")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args, run, print_table, argv)


if __name__ == "__main__":
    sys.exit(main())
