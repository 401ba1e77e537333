"""Search with an uploaded file: the server's answer time against embedding the file in a warm
process.

A small index (a WAV, a JPEG and a video with sound, random weights of the default model) is
served in this process (Starlette's test client: the whole application, without a socket).
For each file kind, after warm-up rounds, `--runs` rounds time in turn:
- `embed`: `Index.embed_queries` on the file (decode + model), the floor an upload can reach;
- `upload`: POST /api/search with the file as the body (receive, a sandboxed decode in a
  worker process, embed, search, answer);
- `fresh worker`: the sandboxed decode alone in a worker started for the file, as the server
  did before its workers were kept (what a worker's start costs).
Reported: medians, and upload / embed (the target is under 2).

    .venv/bin/python benchmarks/upload_speed.py [--runs 7] [--out results.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing xsearch
    sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import xsearch  # noqa: E402


def write_media(folder: Path, video_seconds: int) -> dict[str, Path]:
    """A 3.4 s WAV (0.3 MB), a 640x480 JPEG (0.3 MB) and a 320x240 video with sound."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rate = 44100
    wav = folder / "tone.wav"
    samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(3.4 * rate)) / rate) * 32767).astype(
        np.int16
    )
    with av.open(str(wav), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    jpeg = folder / "noise.jpg"
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(jpeg, quality=90)
    video = folder / "clip.mp4"
    with av.open(str(video), "w") as container:
        picture = container.add_stream("libx264", rate=5)
        picture.width, picture.height, picture.pix_fmt = 320, 240, "yuv420p"
        sound = container.add_stream("aac", rate=rate)
        for i in range(5 * video_seconds):
            rgb = np.full((240, 320, 3), (i * 2) % 255, np.uint8)
            rgb[::7] = rng.integers(0, 255, rgb[::7].shape, dtype=np.uint8)
            for packet in picture.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for start in range(0, video_seconds * rate, 1024):
            t = np.arange(start, start + 1024) / rate
            chunk = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in sound.encode(frame):
                container.mux(packet)
        for stream in (picture, sound):
            for packet in stream.encode(None):
                container.mux(packet)
    return {"audio": wav, "image": jpeg, "video": video}


def timed(call) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--video-seconds", type=int, default=25)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/upload_speed.json")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.video_seconds = 2, 3

    from starlette.testclient import TestClient

    from xsearch.ingest.pipeline import IngestOptions
    from xsearch.server.app import create_app
    from xsearch.server.uploads import QueryDecoders

    rows = []
    with tempfile.TemporaryDirectory(prefix="xsearch-upload-") as tmp:
        files = write_media(Path(tmp) / "media", args.video_seconds)
        index = xsearch.open(
            "bench", root=Path(tmp) / "home", create=True, weights="random", device="cpu"
        )
        index.ingest([Path(tmp) / "media"], IngestOptions(workers=0))
        with TestClient(create_app(index)) as client:  # started: its decode worker is warm
            for kind, path in files.items():
                body = path.read_bytes()
                url = f"/api/search?as={kind}&target=audio"

                def upload(url=url, body=body) -> None:
                    response = client.post(url, content=body)
                    assert response.status_code == 200, response.text

                def embed(kind=kind, path=path) -> None:
                    index.embed_queries(**{kind: [path]})

                def fresh_worker(path=path) -> float:
                    decoders = QueryDecoders(timeout=60, memory_mb=2048)
                    try:
                        return timed(lambda: decoders.check(path))
                    finally:
                        decoders.close()

                for _ in range(2):
                    embed(), upload()
                times: dict[str, list[float]] = {"embed": [], "upload": [], "fresh": []}
                for _ in range(args.runs):
                    times["embed"].append(timed(embed))
                    times["upload"].append(timed(upload))
                    times["fresh"].append(fresh_worker())
                median = {name: statistics.median(t) for name, t in times.items()}
                rows.append(
                    {
                        "kind": kind,
                        "file": path.name,
                        "mb": round(path.stat().st_size / 1e6, 2),
                        "embed_s": round(median["embed"], 3),
                        "upload_s": round(median["upload"], 3),
                        "fresh_worker_decode_s": round(median["fresh"], 3),
                        "upload_over_embed": round(median["upload"] / median["embed"], 2),
                    }
                )

    print(
        f"{'file':<10} {'MB':>5} {'embed s':>8} {'upload s':>9} {'ratio':>6} {'fresh worker s':>15}"
    )
    for r in rows:
        print(
            f"{r['file']:<10} {r['mb']:>5} {r['embed_s']:>8} {r['upload_s']:>9} "
            f"{r['upload_over_embed']:>6} {r['fresh_worker_decode_s']:>15}"
        )
    result = {"machine": {"cpus": os.cpu_count()}, "runs": args.runs, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
