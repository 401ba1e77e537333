"""benchmarks/scale.py --quick: stores written, indexes rebuilt (in memory and on disk),
recall measured against exact search, growth computed, JSON written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the scale benchmark

ROOT = Path(__file__).resolve().parents[2]


def test_scale_quick_run(tmp_path):
    out = tmp_path / "scale.json"
    script = ROOT / "benchmarks" / "scale.py"
    args = ["--quick", "--out", str(out), "--workdir", str(tmp_path / "work")]
    proc = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "EXTRAPOLATED" in proc.stdout and "recall@10" in proc.stdout

    result = json.loads(out.read_text())
    sizes = result["sizes"]
    assert [s["items"] for s in sizes] == [4000, 12000]
    for size in sizes:
        assert size["write"]["write_s"] > 0 and size["write"]["store_bytes"] > 0
        assert size["write"]["peak_rss_gb"] > 0 and size["truth"]["exact_batched_qps"] > 0
        kinds = {(e["exact"], e["on_disk"]) for e in size["indexes"]}
        assert kinds == {(True, False), (False, False), (False, True)}
        for entry in size["indexes"]:
            build, query, best = entry["build"], entry["query"], entry["best"]
            assert build["build_s"] > 0 and build["index_bytes"] > 0
            assert build["peak_rss_gb"] > 0 and query["peak_rss_gb"] > 0
            assert best is not None, entry  # the target was reached...
            assert best["recall_at_10"] >= 0.95 and best["engine_qps"] > 0
            recalls = [r["recall_at_10"] for r in query["sweep"]]
            assert all(r < 0.95 for r in recalls[:-1])  # ...at the first breadth that does
            if entry["exact"]:  # the engine's exact search agrees with the streamed truth
                assert best["recall_at_10"] == 1.0 and best["nprobe"] is None
            else:
                assert build["train_sample"] == size["items"]  # under the rule's minimum
                assert build["train_s"] > 0 and build["add_s"] > 0
            assert ("ivfdata/audio" in build["files"]) == entry["on_disk"]
            assert query["on_disk"] == entry["on_disk"]
        assert size["exact_engine_qps"] > 0 and not size["exact_engine_qps_extrapolated"]
    growth = {(g["of"], g["quantity"]): g for g in result["growth"]}
    assert ("store", "store_gb") in growth and ("IVF32,SQ8", "index_mb") in growth
    index = growth[("IVF32,SQ8", "index_mb")]
    assert 0.8 < index["exponent"] < 1.2  # codes: proportional to the items
    assert set(index["extrapolated"]) == {"10000000", "100000000"}
