"""Embedding throughput of every model's encoder, and how close it gets to the hardware.

For each model (`--model`, repeatable; default every model with published weights) and each
input it embeds (text, images, 5 s audio and 10 s audio) at several batch sizes this times the
encoder's public methods (`embed_text`, `embed_images` with 320x240 PIL images so that
preprocessing counts, `embed_audio` with float32 waveforms), warm-up first, median of the
repeats. Model efficiency is the achieved FLOP/s over the FLOP/s of a 2048x2048 matmul
measured in the same run on the same device (float32 on CPU; on CUDA the encoder runs under
fp16 autocast and the denominator is an fp16 matmul). FLOP per item: AudioCLIP's nominal
figures; for the other models, counted on the timed batch itself (torch's FlopCounterMode),
so a text batch counts the padding to its longest text, a CLAP model's 5 s clip the whole
clip it is padded to, and msclap-2023's 10 s audio its two 7 s windows.

    .venv/bin/python benchmarks/embed_speed.py [--device cpu|cuda] [--batch-sizes 1,8,16]
        [--model audioclip --model laion-clap ...] [--repeats N] [--out results.json] [--quick]

Weights are random (`load_encoder("random", ...)`): speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing xsearch
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks import run_main  # noqa: E402
from xsearch.models import load_encoder, preprocess  # noqa: E402

# Nominal forward cost per item of the full `audioclip` config, GFLOP (a multiply-add is 2).
NOMINAL_GFLOP = {"text": 6.0, "image": 12.2, "audio 5s": 28.7, "audio 10s": 57.3}
AUDIO_SECONDS = {"audio 5s": 5.0, "audio 10s": 10.0}
MODALITIES = ("text", "image", "audio 5s", "audio 10s")
DEFAULT_MODELS = ("audioclip", "laion-clap", "msclap-2023", "cav-mae", "mmv-s3d")

QUERIES = [
    "a dog barking in the rain",
    "children laughing on a playground",
    "a car horn in heavy traffic",
    "waves crashing on a rocky beach",
    "a cat sleeping on a sofa",
    "church bells ringing",
    "someone typing on a keyboard",
    "a train passing a level crossing",
    "birds singing at dawn",
    "applause after a concert",
    "a helicopter flying overhead",
    "frying onions in a pan",
    "a man whistling a tune",
    "thunder and heavy rain",
    "a baby crying at night",
    "footsteps on a wooden floor",
]


def matmul_gflops(device: torch.device, dtype: torch.dtype, tries: int = 10) -> float:
    """Best-of-`tries` FLOP/s of one n x n matmul, in GFLOP/s."""
    n = 2048
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(tries):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} logical CPUs)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} logical CPUs)"


def make_inputs(modality: str, batch: int, sample_rate: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    if modality == "text":
        return [QUERIES[i % len(QUERIES)] for i in range(batch)]
    if modality == "image":
        return [
            Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))  # 320 x 240
            for _ in range(batch)
        ]
    samples = round(AUDIO_SECONDS[modality] * sample_rate)
    return [(rng.standard_normal(samples) * 3000.0).astype(np.float32) for _ in range(batch)]


def counted_gflop(encoder, modality: str, items: list | None = None) -> float:
    """Matmul/conv GFLOP per item, counted with torch's FlopCounterMode (for models that
    have no nominal figure). AudioCLIP's text is counted over the full context, like the
    nominal one; the other models are counted on the encoder's own call over `items`, the
    very batch that is timed (a text batch runs padded to its longest text)."""
    from torch.utils.flop_counter import FlopCounterMode

    if encoder.spec.family != "audioclip":
        items = items or make_inputs(modality, 1, encoder.sample_rate or 1)
        kind = "text" if modality == "text" else "image" if modality == "image" else "audio"
        with FlopCounterMode(display=False) as counter:
            encoder.embed(kind, items)
        return counter.get_total_flops() / 1e9 / len(items)

    from xsearch.models.checkpoint import build_model

    cfg, device = encoder.config, torch.device(encoder.device)
    model = build_model(cfg).to(device)  # counted on the plain architecture
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        if modality == "text":
            tokens = torch.ones(1, cfg.text.context_length, dtype=torch.long, device=device)
            tokens[0, -1] = cfg.text.vocab_size - 1  # the end token, read by encode_text
            model.encode_text(tokens)
        elif modality == "image":
            size = cfg.vision.image_size
            model.encode_image(torch.zeros(1, 3, size, size, device=device))
        else:
            samples = round(AUDIO_SECONDS[modality] * cfg.audio.sample_rate)
            model.encode_audio(torch.zeros(1, samples, device=device))
    return counter.get_total_flops() / 1e9


def time_calls(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # returns numpy rows, so the device work is finished when it returns
        times.append(time.perf_counter() - start)
    return times


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    mm_dtype = torch.float16 if device.type == "cuda" else torch.float32
    mm_first = matmul_gflops(device, mm_dtype)
    models = [run_model(name, device, args) for name in args.models]
    # A second matmul measurement after the models ran: the denominator is the best of both,
    # so that a busy moment at the start cannot inflate the efficiencies.
    mm_gflops = max(mm_first, matmul_gflops(device, mm_dtype))
    for model in models:
        for row in model["rows"]:
            row["efficiency"] = row["gflops"] / mm_gflops
    return {
        "benchmark": "embed_speed",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": str(device),
            "device_name": device_name(device),
            "threads": torch.get_num_threads(),
            "mkldnn": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
            "matmul_gflops": mm_gflops,
            "matmul_gflops_runs": [mm_first, mm_gflops],
            "matmul": f"2048x2048 {str(mm_dtype).removeprefix('torch.')}, best of 10",
        },
        "repeats": args.repeats,
        "warmup": args.warmup,
        "models": models,
    }


def run_model(name: str, device: torch.device, args: argparse.Namespace) -> dict:
    """One model's rows (efficiency is filled in by `run`, against the run's matmul)."""
    encoder = load_encoder("random", config=name, device=str(device))
    fp16 = device.type == "cuda"
    wanted = [m for m in args.modalities if m.split()[0] in encoder.modalities]
    counted = name != "audioclip"
    flop_source = "counted (torch FlopCounterMode)" if counted else "nominal"
    audioclip_text = encoder.spec.family == "audioclip"
    rows = []
    for modality in wanted:
        kind = modality.split()[0]
        for batch in args.batch_sizes:
            items = make_inputs(modality, batch, encoder.sample_rate or 1)
            encoder.batch_size = batch  # one call = exactly one model batch
            times = time_calls(lambda: encoder.embed(kind, items), args.warmup, args.repeats)  # noqa: B023
            gflop = counted_gflop(encoder, modality, items) if counted else NOMINAL_GFLOP[modality]
            effective = modality == "text" and audioclip_text
            median = statistics.median(times)
            if not args.quiet:
                print(f"  {name} {modality:>9} x{batch:<3} {median * 1e3:9.1f} ms")
            clip = kind == "image" and encoder.spec.image.frames > 1  # a video-clip model
            rows.append(
                {
                    "modality": modality,
                    # MMV's pictures run as clips of themselves repeated: a clip's cost
                    "label": f"clip ({encoder.spec.image.frames} frames)" if clip else modality,
                    "batch": batch,
                    "items_per_s": batch / median,
                    "ms_per_item": median * 1e3 / batch,
                    "gflop_per_item": gflop,
                    "gflops": gflop * batch / median,
                    "efficiency": None,
                    "effective": effective,
                    # token positions AudioCLIP's text tower ran
                    "positions": preprocess.tokenize(items).shape[1] if effective else None,
                    "median_s": median,
                    "best_s": min(times),
                    "times_s": times,
                }
            )
    return {
        "config": name,
        "family": encoder.spec.family,
        "precision": "fp16 autocast" if fp16 else "float32",
        "flop_source": flop_source,
        "rows": rows,
    }


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    m = result["machine"]
    console = Console()
    for model in result["models"]:
        table = Table(
            title=(
                f"embed speed: {model['config']} on {m['device_name']}, {m['threads']} threads, "
                f"{model['precision']}; FLOP per item {model['flop_source']}"
            )
        )
        for name in ("modality", "batch", "items/s", "ms/item", "GFLOP/s", "efficiency"):
            table.add_column(name, justify="left" if name == "modality" else "right")
        for r in model["rows"]:
            mark = "*" if r["effective"] else ""
            table.add_row(
                r.get("label", r["modality"]) + mark,
                str(r["batch"]),
                f"{r['items_per_s']:.2f}",
                f"{r['ms_per_item']:.1f}",
                f"{r['gflops']:.1f}{mark}",
                f"{r['efficiency']:.2f}{mark}",
            )
        console.print(table)
    console.print(
        f"efficiency = achieved FLOP/s / {m['matmul']} matmul FLOP/s "
        f"({m['matmul_gflops']:.1f} GFLOP/s, same run, same device); median of "
        f"{result['repeats']} calls after {result['warmup']} warm-up."
    )
    rows = [r for model in result["models"] for r in model["rows"] if r["effective"]]
    positions = sorted({r["positions"] for r in rows})
    if positions:
        console.print(
            "* AudioCLIP text is 'effective': the FLOP count is the nominal one for all 77 "
            "token positions, but the encoder runs only the positions up to the longest end "
            f"token ({'/'.join(map(str, positions))} for these short queries), so text GFLOP/s "
            "and efficiency overstate the hardware use and can exceed 1."
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--batch-sizes", default="1,8,16", help="comma-separated (default 1,8,16)")
    p.add_argument(
        "--model",
        "--config",
        dest="models",
        action="append",
        help="model name, repeatable (default: " + ", ".join(DEFAULT_MODELS) + ")",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed calls per cell (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per cell (default 1)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument(
        "--modalities",
        default="text,image,audio5s,audio10s",
        help="comma-separated subset of text,image,audio5s,audio10s (default all)",
    )
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--quick", action="store_true", help="smoke run: batches 1 and 2, 1 repeat")
    p.add_argument("--quiet", action="store_true", help="no per-cell progress lines")
    args = p.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    args.models = args.models or list(DEFAULT_MODELS)
    known = {m.replace(" ", ""): m for m in MODALITIES}
    wanted = [m.strip().replace(" ", "") for m in args.modalities.split(",") if m.strip()]
    if not wanted or any(m not in known for m in wanted):
        p.error(f"--modalities: choose from {', '.join(known)}")
    args.modalities = [known[m] for m in wanted]
    if args.quick:
        args.batch_sizes, args.repeats, args.warmup = [1, 2], 1, 1
    if not args.batch_sizes or min(args.batch_sizes) < 1 or args.repeats < 1 or args.warmup < 0:
        p.error("batch sizes and --repeats must be positive, --warmup not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args, run, print_table, argv)


if __name__ == "__main__":
    sys.exit(main())
