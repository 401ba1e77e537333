"""The long-video ingest benchmark runs end to end (a smoke run: figures are checked for sense,
not speed)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # generates a video and runs the video ingest benchmark

ROOT = Path(__file__).resolve().parents[2]


def test_video_ingest_benchmark_quick(tmp_path):
    out = tmp_path / "video.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/video_ingest.py"), "--quick",
           "--cache", str(tmp_path / "cache"), "--out", str(out)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "pipeline efficiency" in result.stdout
    data = json.loads(out.read_text())
    video, ingested, model_only = data["video"], data["ingest"], data["model_only"]
    assert (video["frames"], video["shots"]) == (600, 3)  # 1 min at 10 fps, a shot every 20 s
    assert ingested["items"] == {"image": 30, "audio": 6}  # a frame every 2 s, 10 s windows
    assert model_only["items"] == ingested["items"]  # the first minute is the whole video
    for rate in (*ingested["items_per_s_embedding"].values(), *model_only["items_per_s"].values()):
        assert rate > 0
    assert ingested["end_to_end_items_per_s"] > 0 and ingested["waiting_for_decode_s"] >= 0
    assert 0 < data["pipeline_efficiency"] < 1.5
    assert ingested["parent_peak_mb"] > 0 and ingested["workers_peak_mb"] > 0
    counts = {row["frames_policy"]: row["frames"] for row in data["frame_counts"]}
    # one frame per planted shot, however high the cap; every:1 a frame a second
    assert list(counts.values()) == [3, 3, 60]
    assert list(counts)[2] == "every:1"

    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "reusing" in again.stdout  # the video is generated once
    assert json.loads(out.read_text())["video"]["generation_s"] is None
