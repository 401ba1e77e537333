"""Ingest of one long video with frames over time: decode speed, embed speed and peak memory.

1. A synthetic video is generated once and cached (`--cache`): 1280x720 at `--fps`, `--minutes`
   long, H.264 (libx264, preset veryfast) or else MPEG-4, with an AAC track. Every
   `--shot-seconds` a new shot starts (another colour, brightness and stripe pattern, another
   tone), so that `scenes` has real cuts to find; within a shot a square moves and noise bursts
   sound every 3 s.
2. `ingest` of that one video into a fresh index with `--frames` (default every:2), reporting
   the wall time, video frames decoded per second (all the video's frames over the time the
   ingest waited for the decode worker, which for a single file is that worker's whole
   decode), items embedded per second (image and audio over their embedding time, and all
   items over the wall time), the index's size, and the peak resident memory of this process
   during the ingest (it runs the model; VmHWM reset just before, Linux) and of a decode
   worker (its VmHWM, read while it runs). Pipeline efficiency = end-to-end items/s over
   model-only items/s, where model-only embeds the same items decoded in this process with
   `decode_file` and the same settings, in the same batch size, once just before and once
   just after the ingest (the load of a shared machine drifts; both rates are reported).
   Model-only takes the items of the first `--model-only-minutes` (default 10) only, which
   have the same mix of frames and windows as the whole video: the whole would take as long
   as the ingest, twice. Its decode briefly holds the whole video's items in memory (about
   0.9 GB for an hour: frames at the model's size and the sound at its sample rate); they
   wait in a file during the ingest. With one file, the ingest embeds the video's items once
   its worker has decoded it all: decoding and embedding do not overlap, so the efficiency
   shows what decoding costs on top of the model.
3. Frames of `scenes` (the default cap, and a cap above the planted cuts) against `every:1`
   on the same video: decode only (`decode_file`, image_size=224, no sound), counts and times.

Weights are random (`load_encoder("random", ...)`): speed does not depend on their values. The
synthetic picture is easier to decode than filmed footage (flat areas, little motion), so the
decode rates are an upper bound for real video of the same size.

    .venv/bin/python benchmarks/video_ingest.py [--minutes 60] [--fps 10] [--shot-seconds 20]
        [--frames every:2] [--model audioclip] [--workers 2] [--batch-size 16]
        [--model-only-minutes 10] [--cache DIR] [--out results.json] [--quick]
"""

from __future__ import annotations

import argparse
import colorsys
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing xsearch
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks import run_main  # noqa: E402
from xsearch.errors import XSearchError  # noqa: E402
from xsearch.ingest.decode import decode_file  # noqa: E402
from xsearch.ingest.pipeline import IngestOptions, decode_settings, ingest  # noqa: E402
from xsearch.ingest.scan import find_files  # noqa: E402
from xsearch.media.frames import FramePolicy  # noqa: E402
from xsearch.models import load_encoder  # noqa: E402

console = Console()
SAMPLE_RATE = 44100
AUDIO_CHUNK = 1024  # samples per AAC frame
GENERATOR_VERSION = 1  # bump when the picture or sound changes, so caches are not reused


@dataclass(frozen=True)
class VideoSpec:
    """The synthetic video: its size, length, frame rate and shot length."""

    width: int
    height: int
    minutes: float
    fps: int
    shot_seconds: float

    @property
    def frames(self) -> int:
        return round(self.minutes * 60 * self.fps)

    @property
    def shots(self) -> int:
        return -(-self.frames // round(self.shot_seconds * self.fps))  # ceiling

    def shot_of(self, frame: int) -> int:
        return int(frame / self.fps // self.shot_seconds)

    @property
    def file_name(self) -> str:
        return (
            f"synthetic_{self.width}x{self.height}_{self.minutes:g}min_{self.fps}fps_"
            f"{self.shot_seconds:g}s-shots_v{GENERATOR_VERSION}.mp4"
        )


# --- the synthetic video ----------------------------------------------------------------------


def shot_background(shot: int, width: int, height: int) -> np.ndarray:
    """The background of a shot: uint8 [height, width, 3]. Consecutive shots alternate dark and
    light, so a cut changes the picture far more than the moving square does."""
    hue = (shot * 0.618) % 1.0
    value = 0.3 if shot % 2 == 0 else 0.9
    colour = np.array(colorsys.hsv_to_rgb(hue, 0.7, value)) * 255
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    period = 40 + 20 * (shot % 4)
    along = (x, y, x + y)[shot % 3]  # vertical, horizontal or diagonal stripes
    stripes = 1.0 + 0.15 * np.sin(2 * np.pi * along / period)
    return np.clip(colour * stripes[..., None], 0, 255).astype(np.uint8)


def draw_frame(background: np.ndarray, index: int, fps: int) -> np.ndarray:
    """The background with a square that crosses the frame every 4 seconds, back and forth."""
    height, width = background.shape[:2]
    side = height // 5
    travel = width - side
    phase = (index / (4 * fps)) % 2.0
    left = int(travel * (phase if phase < 1 else 2 - phase))
    top = int((height - side) * (0.5 + 0.3 * np.sin(index / fps)))
    frame = background.copy()
    frame[top : top + side, left : left + side] = 255 - background[top, left]
    return frame


def sound(spec: VideoSpec, first: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Samples `first`..`first + count` of the track: a quiet tone whose pitch changes with
    the shot, and a burst of noise for a quarter second every 3 s."""
    t = (first + np.arange(count)) / SAMPLE_RATE
    shot = (t // spec.shot_seconds).astype(np.int64)
    wave = 0.05 * np.sin(2 * np.pi * 220.0 * (1 + shot % 5) * t)
    burst = (t % 3.0) < 0.25
    wave[burst] += 0.3 * rng.standard_normal(int(burst.sum()))
    return wave.astype(np.float32)


def write_synthetic_video(path: Path, spec: VideoSpec) -> None:
    """Encode the video one frame at a time, with its sound interleaved."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        video = container.add_stream(codec, rate=spec.fps)
        video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv420p"
        if codec == "libx264":
            video.options = {"preset": "veryfast"}
        audio = container.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "mono"
        background, shot, written = None, -1, 0
        for index in range(spec.frames):
            if spec.shot_of(index) != shot:
                shot = spec.shot_of(index)
                background = shot_background(shot, spec.width, spec.height)
            assert background is not None
            rgb = draw_frame(background, index, spec.fps)
            container.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            due = (index + 1) * SAMPLE_RATE // spec.fps
            while written + AUDIO_CHUNK <= due:
                written = _mux_sound(container, audio, spec, written, rng)
        end = spec.frames * SAMPLE_RATE // spec.fps
        while written < end:
            written = _mux_sound(container, audio, spec, written, rng, end - written)
        container.mux(video.encode())
        container.mux(audio.encode())


def _mux_sound(container, audio, spec, written: int, rng, count: int = AUDIO_CHUNK) -> int:
    import av

    chunk = sound(spec, written, min(count, AUDIO_CHUNK), rng)[None, :]
    frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
    frame.sample_rate, frame.pts = SAMPLE_RATE, written
    container.mux(audio.encode(frame))
    return written + chunk.shape[1]


def cached_video(spec: VideoSpec, cache: Path) -> tuple[Path, float | None]:
    """The video of `spec` in `cache`, generated unless a complete one is there: (its path,
    seconds spent generating it, or None when it was reused). A recipe file written after the
    video marks it complete, so an interrupted generation is never reused."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / spec.file_name
    recipe = path.with_suffix(".json")
    if path.exists() and recipe.exists() and json.loads(recipe.read_text()) == asdict(spec):
        return path, None
    partial = path.with_name("partial-" + path.name)
    t0 = time.perf_counter()
    write_synthetic_video(partial, spec)
    seconds = time.perf_counter() - t0
    partial.replace(path)
    recipe.write_text(json.dumps(asdict(spec)))
    return path, seconds


# --- measurements -----------------------------------------------------------------------------


def reset_parent_peak() -> bool:
    """Start this process's peak resident memory (VmHWM) afresh, so that it measures what comes
    next; False where that cannot be done (then the peak is that of the whole run)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def parent_peak_mb() -> float:
    """Peak resident memory of this process (since `reset_parent_peak`), in MB."""
    peak_kb = _peak_kb(os.getpid())
    if peak_kb:
        return peak_kb / 2**10
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes there, KB here


class ChildPeaks:
    """Peak resident memory (VmHWM) of this process's child processes while it runs, seen by a
    thread that looks every `interval` seconds (Linux; elsewhere nothing is seen). VmHWM is a
    high-water mark, so a sample misses at most the growth of a child's last moments. Not
    RUSAGE_CHILDREN: it counts a child's copy of this process between fork and exec (the
    model's memory, not the worker's), and is a maximum over every child ever waited for."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval, self.peak_kb = interval, 0
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ChildPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while True:
            for pid in _children(os.getpid()):
                self.pids.add(pid)
                self.peak_kb = max(self.peak_kb, _peak_kb(pid))
            if self._stop.wait(self.interval):
                return


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def _peak_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def warm_up(encoder, batch_size: int) -> None:
    """Load the towers and run each on a full batch, so that no timing counts model loading or
    the first run of a batch shape."""
    spec = encoder.spec
    if spec.image:
        blank = Image.new("RGB", (spec.image.size, spec.image.size))
        encoder.embed("image", [blank] * batch_size)
    if spec.audio:
        encoder.embed("audio", [np.zeros(spec.audio.sample_rate, np.float32)] * 2)


def measure_ingest(video: Path, args, encoder, workdir: Path) -> dict:
    """Ingest the video into a fresh index; times, rates and peak memory."""
    [found] = find_files([video])
    parent_rss = _rss_mb()
    peak_is_ingest = reset_parent_peak()
    options = IngestOptions(workers=args.workers, frames=args.frames)
    with ChildPeaks() as workers:
        t0 = time.perf_counter()
        report = ingest([found], workdir / "index", encoder, options)
        wall = time.perf_counter() - t0
    if report.failed:
        sys.exit(f"error: the ingest failed: {report.failed[0][1]}")
    items = dict(report.items)
    embed_s = dict(report.embed_seconds_by_modality)
    rates = {m: items[m] / embed_s[m] for m in items if embed_s.get(m)}
    index_bytes = sum(p.stat().st_size for p in (workdir / "index").rglob("*") if p.is_file())
    return {
        "wall_s": wall,
        "items": items,
        "embed_s": embed_s,
        "items_per_s_embedding": rates,
        "end_to_end_items_per_s": sum(items.values()) / wall,
        # what decoding added to the wall time: the model waiting for decoded items (the
        # video's sound comes ahead of its frames, which decode while it is embedded)
        "waiting_for_decode_s": report.decode_seconds,
        "index_mb": index_bytes / 1e6,
        "parent_rss_before_mb": parent_rss,  # the model, loaded and run
        "parent_peak_mb": parent_peak_mb(),
        "parent_peak_is_ingest_only": peak_is_ingest,
        # None where /proc is not there to look at the workers
        "workers_peak_mb": workers.peak_kb / 2**10 if workers.pids else None,
        "workers_seen": len(workers.pids),
    }


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**10
    return 0.0


def model_inputs(video: Path, args, encoder) -> tuple[dict[str, list], float]:
    """The model's inputs of the items starting in the first `--model-only-minutes`, decoded
    in this process as ingest decodes them (same settings, uint8 frames made PIL images), and
    the seconds that decoding the whole video took."""
    settings = decode_settings(IngestOptions(frames=args.frames), encoder)
    names = ("window_seconds", "image_size", "sample_rate", "image_norm", "resampler")
    options = {k: settings[k] for k in (*names, "merge_tail", "frames")}
    t0 = time.perf_counter()
    decoded = decode_file(str(video), **options)
    decode_s = time.perf_counter() - t0
    prefix = min(args.model_only_minutes, args.spec.minutes) * 60
    images = [
        pixels if pixels.dtype == np.float32 else Image.fromarray(pixels)
        for start, _, pixels in decoded.frames
        if (start or 0.0) < prefix
    ]
    waves = [np.array(w.wave) for w in decoded.audio if w.start < prefix]  # copies, not views
    return {m: p for m, p in (("image", images), ("audio", waves)) if p}, decode_s


def embed_all(encoder, inputs: dict[str, list]) -> dict[str, float]:
    """Seconds embedding each modality's inputs (the encoder batches them as ingest does)."""
    seconds = {}
    for modality, batch in inputs.items():
        t0 = time.perf_counter()
        encoder.embed(modality, batch)
        seconds[modality] = time.perf_counter() - t0
    return seconds


def model_only_rates(inputs: dict[str, list], passes: list[dict[str, float]]) -> dict:
    """Items/s of the model alone over every pass, and of each pass (the machine's load may
    change between them)."""
    items = {m: len(p) for m, p in inputs.items()}
    seconds = {m: sum(p[m] for p in passes) for m in items}
    return {
        "items": items,
        "passes": len(passes),
        "embed_s": seconds,
        "items_per_s": {m: len(passes) * items[m] / seconds[m] for m in items},
        "total_items_per_s": len(passes) * sum(items.values()) / sum(seconds.values()),
        "total_items_per_s_by_pass": [sum(items.values()) / sum(p.values()) for p in passes],
    }


def parked(inputs: dict[str, list], folder: Path) -> Path:
    """Write the inputs to a NumPy file (no pickle), so that the ingest's peak memory does
    not count them; `unparked` reads them back."""
    path = folder / "model-inputs.npz"
    arrays = {
        f"{modality}:{i}": np.asarray(x)
        for modality, xs in inputs.items()
        for i, x in enumerate(xs)
    }
    pictures = [isinstance(x, Image.Image) for x in inputs.get("image", [])]
    np.savez(path, pictures=np.array(pictures, dtype=bool), **arrays)
    return path


def unparked(path: Path) -> dict[str, list]:
    """The inputs `parked` wrote, pictures as PIL images again."""
    with np.load(path, allow_pickle=False) as saved:
        names = [n for n in saved.files if n != "pictures"]
        out: dict[str, list] = {}
        for name in sorted(names, key=lambda n: (n.split(":")[0], int(n.split(":")[1]))):
            out.setdefault(name.split(":")[0], []).append(saved[name])
        pictures = saved["pictures"]
    if "image" in out:
        out["image"] = [Image.fromarray(x) if p else x for x, p in zip(out["image"], pictures)]
    return out


def count_frames(video: Path, policies: list[str]) -> list[dict]:
    """Frames each policy picks from the video, decoding pictures only, and the time taken."""
    rows = []
    for policy in policies:
        t0 = time.perf_counter()
        decoded = decode_file(str(video), frames=policy, image_size=224, sample_rate=None)
        seconds = time.perf_counter() - t0
        rows.append({"frames_policy": policy, "frames": len(decoded.frames), "decode_s": seconds})
        del decoded
    return rows


# --- the run ----------------------------------------------------------------------------------


def run(args) -> dict:
    spec = args.spec
    console.print(
        f"video: {spec.width}x{spec.height}, {spec.minutes:g} min at {spec.fps} fps "
        f"({spec.frames} frames, {spec.shots} shots of {spec.shot_seconds:g} s)"
    )
    video, generation_s = cached_video(spec, args.cache)
    if generation_s is None:
        console.print(f"reusing {video.name} from the cache")
    else:
        console.print(f"generated {video.name} in {generation_s:.1f} s")
    encoder = load_encoder("random", config=args.model, device="cpu", batch_size=args.batch_size)
    warm_up(encoder, args.batch_size)
    # model-only runs before and after the ingest: the load of a shared machine drifts
    inputs, decode_s = model_inputs(video, args, encoder)
    passes = [embed_all(encoder, inputs)]
    with tempfile.TemporaryDirectory(prefix="xsearch-video-bench-") as tmp:
        park = parked(inputs, Path(tmp))
        del inputs
        ingested = measure_ingest(video, args, encoder, Path(tmp))
        inputs = unparked(park)
    passes.append(embed_all(encoder, inputs))
    model_only = model_only_rates(inputs, passes) | {
        "prefix_s": min(args.model_only_minutes, spec.minutes) * 60,
        "decode_in_process_s": decode_s,
        "video_frames_per_s_in_process": spec.frames / decode_s,
    }
    capped = str(FramePolicy.parse("scenes"))
    # room for every planted cut, and for false ones
    uncapped = f"scenes:{FramePolicy.parse('scenes').max_frames + 4 * spec.shots}"
    counts = count_frames(video, [capped, uncapped, "every:1"])
    return {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpu": platform.processor()},
        "video": asdict(spec) | {"frames": spec.frames, "shots": spec.shots,
                                 "mb": video.stat().st_size / 1e6, "generation_s": generation_s},
        "model": args.model, "frames_policy": args.frames, "workers": args.workers,
        "batch_size": args.batch_size,
        "ingest": ingested, "model_only": model_only,
        "pipeline_efficiency": ingested["end_to_end_items_per_s"] / model_only["total_items_per_s"],
        "frame_counts": counts,
    }  # fmt: skip


def print_table(result: dict) -> None:
    ing, mo, video = result["ingest"], result["model_only"], result["video"]
    title = (
        f"ingest of {video['minutes']:g} min of {video['width']}x{video['height']} video "
        f"({result['model']}, frames {result['frames_policy']}, CPU)"
    )
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("wall s", f"{ing['wall_s']:.1f}"),
        ("video frames/s decoded (in one process, with the sound)",
         f"{mo['video_frames_per_s_in_process']:.0f}"),
        ("s the model waited for decoding", f"{ing['waiting_for_decode_s']:.1f}"),
        *((f"{m} items/s ({n} items, embedding)", f"{ing['items_per_s_embedding'][m]:.2f}")
          for m, n in ing["items"].items() if m in ing["items_per_s_embedding"]),
        ("all items/s end to end", f"{ing['end_to_end_items_per_s']:.2f}"),
        (f"model-only items/s (first {mo['prefix_s'] / 60:g} min)",
         f"{mo['total_items_per_s']:.2f}"),
        ("model-only items/s, before and after the ingest",
         " / ".join(f"{r:.2f}" for r in mo["total_items_per_s_by_pass"])),
        ("pipeline efficiency", f"{result['pipeline_efficiency']:.2f}"),
        ("peak memory MB, this process (before the ingest)",
         f"{ing['parent_peak_mb']:.0f} ({ing['parent_rss_before_mb']:.0f})"),
        ("peak memory MB, a decode worker", _mb(ing["workers_peak_mb"])),
        ("index MB", f"{ing['index_mb']:.1f}"),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    console.print(table)
    frames = Table(title=f"frames picked ({video['shots']} planted shots; pictures only)")
    for col in ("frames", "count", "decode s"):
        frames.add_column(col, justify="right")
    for row in result["frame_counts"]:
        frames.add_row(row["frames_policy"], str(row["frames"]), f"{row['decode_s']:.1f}")
    console.print(frames)


def _mb(value: float | None) -> str:
    return "not seen" if value is None else f"{value:.0f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--shot-seconds", type=float, default=20.0)
    parser.add_argument("--frames", default="every:2", help="the frame policy of the ingest")
    parser.add_argument("--model", default="audioclip", help="model name (random weights)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model-only-minutes", type=float, default=10.0)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "xsearch-video-bench",
        help="folder of generated videos, reused when the parameters match",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/video_ingest.json")
    parser.add_argument(
        "--quick", action="store_true", help="1 min of 320x240 with audioclip-tiny (smoke run)"
    )
    args = parser.parse_args(argv)
    width, height = (320, 240) if args.quick else (1280, 720)
    if args.quick:
        args.minutes, args.model = 1.0, "audioclip-tiny"
    for name in ("minutes", "fps", "shot_seconds", "model_only_minutes", "batch_size", "workers"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    try:
        args.frames = str(FramePolicy.parse(args.frames))
    except XSearchError as exc:
        parser.error(str(exc))
    args.spec = VideoSpec(width, height, args.minutes, args.fps, args.shot_seconds)
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args, run, print_table, argv)


if __name__ == "__main__":
    sys.exit(main())
