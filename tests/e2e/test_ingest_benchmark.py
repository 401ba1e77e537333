"""The ingest benchmark runs end to end (a smoke run: figures are checked for sense, not speed)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the ingest benchmark

ROOT = Path(__file__).resolve().parents[2]


def test_ingest_benchmark_quick(tmp_path):
    out = tmp_path / "ingest.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/ingest_speed.py"), "--quick",
           "--config", "audioclip-tiny", "--out", str(out)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    pipe = data["pipeline"]
    assert pipe["items"] == 6  # 2 videos (frame + 5 s sound) + 2 audio files of 10 s
    assert pipe["end_to_end_items_per_s"] > 0 and pipe["model_only_items_per_s"] > 0
    assert 0 < pipe["decode_share"] < 1
    assert [row["items"] for row in data["store"]] == [1000]
    assert data["store"][0]["open_s"] > 0
    assert data["grow"] is None


def test_store_only_benchmark_grows_a_store_commit_by_commit(tmp_path):
    out = tmp_path / "store.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/ingest_speed.py"), "--store-only",
           "--store-sizes", "500", "--grow", "5000", "--commit-items", "500",
           "--out", str(out)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["pipeline"] is None and [row["items"] for row in data["store"]] == [500]
    grow = data["grow"]
    assert (grow["items"], grow["commits"]) == (5000, 10)
    times = [c["store_s"] for c in grow["checkpoints"]]
    assert times == sorted(times) and times[-1] == grow["store_s"] > 0
    assert 0 < grow["growth_exponent"] < 5


def test_query_benchmark_quick(tmp_path):
    out = tmp_path / "query.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/query_speed.py"), "--quick",
           "--config", "audioclip-tiny", "--out", str(out)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    [row] = json.loads(out.read_text())["rows"]
    assert row["items"] == 2000
    for part in ("end_to_end", "text_encoding", "vector_search", "metadata", "bare_numpy"):
        assert 0 < row[f"{part}_p50_ms"] <= row[f"{part}_p95_ms"]
