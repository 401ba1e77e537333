"""The benchmark scripts run end to end (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_embed_speed_quick_run_writes_positive_rates(tmp_path):
    out = tmp_path / "tmp.json"
    script = ROOT / "benchmarks" / "embed_speed.py"
    args = ["--quick", "--config", "audioclip-tiny", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "efficiency" in proc.stdout

    result = json.loads(out.read_text())
    assert result["config"] == "audioclip-tiny"
    assert result["machine"]["matmul_gflops"] > 0
    assert result["machine"]["torch"]
    rows = result["rows"]
    assert {r["modality"] for r in rows} == {"text", "image", "audio 5s", "audio 10s"}
    assert {r["batch"] for r in rows} == {1, 2}
    for row in rows:
        assert row["items_per_s"] > 0, row
        assert row["ms_per_item"] > 0, row
        assert row["gflop_per_item"] > 0, row
        assert row["efficiency"] > 0, row
    text = [r for r in rows if r["modality"] == "text"]
    assert all(r["effective"] and 2 <= r["positions"] < 77 for r in text)
