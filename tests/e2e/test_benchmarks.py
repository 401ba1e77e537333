"""The benchmark scripts run end to end (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the benchmark scripts

ROOT = Path(__file__).resolve().parents[2]


def test_embed_speed_quick_run_writes_positive_rates(tmp_path):
    out = tmp_path / "tmp.json"
    script = ROOT / "benchmarks" / "embed_speed.py"
    models = ["audioclip-tiny", "laion-clap-tiny", "msclap-2023-tiny", "mmv-tiny"]
    args = ["--quick", *(a for m in models for a in ("--model", m)), "--out", str(out)]
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
    assert [m["config"] for m in result["models"]] == models
    assert result["machine"]["matmul_gflops"] > 0
    assert result["machine"]["torch"]
    expected = {
        "audioclip-tiny": {"text", "image", "audio 5s", "audio 10s"},
        "laion-clap-tiny": {"text", "audio 5s", "audio 10s"},  # no image tower
        "msclap-2023-tiny": {"text", "audio 5s", "audio 10s"},
        "mmv-tiny": {"text", "image", "audio 5s", "audio 10s"},  # its pictures run as clips
    }
    for model in result["models"]:
        rows = model["rows"]
        assert {r["modality"] for r in rows} == expected[model["config"]]
        assert {r["batch"] for r in rows} == {1, 2}
        for row in rows:
            assert row["items_per_s"] > 0, row
            assert row["ms_per_item"] > 0, row
            assert row["gflop_per_item"] > 0, row
            assert row["efficiency"] > 0, row
    clips = [r for r in result["models"][3]["rows"] if r["modality"] == "image"]
    assert {r["label"] for r in clips} == {"clip (8 frames)"} and "clip (8 frames)" in proc.stdout
    text = [r for r in result["models"][0]["rows"] if r["modality"] == "text"]
    assert all(r["effective"] and 2 <= r["positions"] < 77 for r in text)
    # a tiny CLAP model's 10 s audio is five 2 s clips, its 5 s audio three
    clap = {r["modality"]: r["gflop_per_item"] for r in result["models"][1]["rows"]}
    assert clap["audio 10s"] == pytest.approx(clap["audio 5s"] * 5 / 3, rel=0.01)


def test_query_speed_quick_run_measures_latency_and_approximate_search(tmp_path):
    out = tmp_path / "query.json"
    script = ROOT / "benchmarks" / "query_speed.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--config", "audioclip-tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "recall@10" in proc.stdout

    result = json.loads(out.read_text())
    parts = ("end_to_end", "text_encoding", "vector_search", "metadata", "search_from_vector",
             "bare_numpy")  # fmt: skip
    for key, threads in (("rows", "as is"), ("rows_1_thread", 1)):
        [row] = result[key]
        assert row["items"] == 2000 and row["threads"] == threads
        for part in parts:
            assert 0 < row[f"{part}_p50_ms"] <= row[f"{part}_p95_ms"], (key, part)
        assert row["ratio_to_encoding_plus_bare"] > 0

    [ann] = result["ann"]
    assert ann["items"] == 2000 and ann["queries"] == 20
    nb = ann["neighbours"]  # clustered data: near neighbours stand out from random pairs
    assert nb["random_pair_cosine"] < nb["cosine_10th"] <= nb["cosine_1st"] <= 1
    assert nb["lid_20"] > 0
    indexes = {e["factory"]: e for e in ann["indexes"]}
    assert set(indexes) == {"IVF16,PQ64x4fsr,RFlat", "IVF16,SQ8"}
    for entry in indexes.values():
        assert entry["built_with"] == "Writer.rebuild"  # the published rebuild path
        exact = entry["exact"]
        assert exact["recall_at_10"] == 1.0
        assert exact["vector_qps"] > 0 and exact["engine_qps_1t"] > 0
        for row in entry["sweep"]:
            assert 0 <= row["recall_at_10"] <= 1
            assert row["vector_qps"] > 0 and row["engine_qps"] > 0
            assert row["vector_speedup"] > 0 and row["engine_speedup_best"] > 0
            # search() returns what the index returns with the same parameters
            assert row["engine_same_as_vector"] == 1.0
        assert entry["best"] is not None and entry["best"]["recall_at_10"] >= 0.95
        assert entry["smallest"]
    # every list visited: recall is limited by the codes alone, and re-ranking more of the
    # approximate candidates with the exact vectors recovers it
    refine = {r["k_factor"]: r["recall_at_10"] for r in indexes["IVF16,PQ64x4fsr,RFlat"]["sweep"]
              if r["nprobe"] == 16}  # fmt: skip
    assert refine[32] > refine[4]
    sq8 = {r["nprobe"]: r["recall_at_10"] for r in indexes["IVF16,SQ8"]["sweep"]}
    assert sq8[1] < sq8[16] and sq8[16] >= 0.99


def test_reliability_report_tallies_a_real_run(tmp_path):
    from benchmarks import reliability

    out = tmp_path / "reliability.json"
    report = reliability.main(
        [
            "--files",
            "tests/reliability/test_crash.py",
            "-k",
            "write-reference-text",
            "--out",
            str(out),
        ]
    )
    assert report["pytest_exit"] == 0
    assert report["categories"]["crash points"] == {
        "tried": 1, "survived": 1, "lost_items": 0, "cases": 1
    }  # fmt: skip
    assert report["tests"]["test_crash"]["passed"] == 1
    assert json.loads(out.read_text()) == report


def test_cli_latency_small_run_times_every_command(tmp_path):
    out = tmp_path / "cli.json"
    script = ROOT / "benchmarks" / "cli_latency.py"
    args = ["--sizes", "300", "--runs", "1", "--files", "12", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rows = {row["command"]: row for row in json.loads(out.read_text())["rows"]}
    assert any(c.startswith("query, resident") for c in rows)
    for command, row in rows.items():
        assert row["median_s"] > 0, command
        failing = command.startswith(("usage error", "bad --where"))
        assert all(code != 0 for code in row["exit_codes"]) == failing, command


def _run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def test_av_retrieval_quick_run_prints_ours_beside_the_published(tmp_path):
    out = tmp_path / "av.json"
    proc = _run_script("av_retrieval.py", "--quick", "--out", str(out))
    assert "RANDOM WEIGHTS" in proc.stdout and "CAV-MAE Scale+" in proc.stdout
    result = json.loads(out.read_text())
    assert [r["direction"] for r in result["rows"]] == ["A->V", "V->A"]
    for row in result["rows"]:
        assert row["clips"] == 6 and row["ours"][2] == 100.0  # 6 candidates: all in the top 10
        assert row["CAV-MAE Scale+"] and row["CAV-MAE"]


def test_av_retrieval_runs_mmv_and_says_it_publishes_no_such_number(tmp_path):
    out = tmp_path / "av.json"
    proc = _run_script("av_retrieval.py", "--quick", "--model", "mmv-s3d", "--out", str(out))
    assert "MMV publishes no audio <-> video retrieval" in proc.stdout
    result = json.loads(out.read_text())
    assert result["model"] == "mmv-tiny"  # the quick run's tiny model of the family
    assert [set(r) for r in result["rows"]] == [{"direction", "clips", "ours"}] * 2


def test_upload_speed_quick_run_times_uploads_and_embedding(tmp_path):
    out = tmp_path / "upload.json"
    _run_script("upload_speed.py", "--quick", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["kind"] for r in rows] == ["audio", "image", "video"]
    assert all(
        r["embed_s"] > 0 and r["upload_s"] > 0 and r["fresh_worker_decode_s"] > 0 for r in rows
    )
