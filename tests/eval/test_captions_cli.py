"""`xsearch eval --dataset clotho|audiocaps` in a real process: the caption table and JSON, the
split and missing-clip options, and their errors."""

from __future__ import annotations

import json

import pytest

from tests.helpers.caption_layouts import write_audiocaps, write_clotho
from tests.helpers.cli import run_cli


@pytest.mark.slow  # real processes, the tiny AudioCLIP
def test_eval_a_clotho_layout_with_the_tiny_model(tmp_path):
    root = write_clotho(tmp_path / "clotho", clips=3, split="validation").root
    env = {"XSEARCH_HOME": str(tmp_path / "home")}
    args = ("eval", "--dataset", "clotho", str(root), "--split", "validation", "-w", "random",
            "--model", "audioclip-tiny", "--device", "cpu")  # fmt: skip
    done = run_cli(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert "RANDOM weights" in done.stderr
    report = json.loads(done.stdout)
    assert report["index"] == "eval-clotho" and report["protocol"] == "captions"
    assert report["model"]["config"] == "audioclip-tiny" and report["zero_shot"] == {}
    pairs = {(p["query"], p["result"]): p for p in report["pairs"]}
    assert set(pairs) == {("text", "audio"), ("audio", "text")}  # no image pairings
    assert pairs[("text", "audio")]["queries"] == 15 and pairs[("text", "audio")]["candidates"] == 3
    assert pairs[("audio", "text")]["queries"] == 3 and pairs[("audio", "text")]["candidates"] == 15
    for p in pairs.values():
        assert all(0 <= p[m] <= 1 for m in ("R@1", "R@5", "R@10", "mAP@10"))
    table = run_cli(*args, "--compare-exact", env=env)  # the same index again: a table
    assert table.returncode == 0, table.stderr
    assert "caption retrieval" in table.stdout and "mAP@10 exact" in table.stdout
    assert "R@5" in table.stdout and "MRR" not in table.stdout and "zero-shot" not in table.stdout


@pytest.mark.slow  # a real process per error
def test_caption_dataset_errors_are_one_line(tmp_path):
    clotho = write_clotho(tmp_path / "clotho", clips=1).root
    audiocaps = write_audiocaps(tmp_path / "ac", clips=1, missing=2).root
    env = {"XSEARCH_HOME": str(tmp_path / "home")}
    for args, needle in (
        (["--dataset", "clotho", str(clotho), "--split", "test"], "unknown split 'test'"),
        (["--dataset", "clotho", str(clotho), "--pairs", "audio:audio"], "--pairs: caption"),
        (["--dataset", "esc50", str(clotho), "--split", "evaluation"], "unknown option"),
        (["--index", "x", "--split", "evaluation"], "--split applies to --dataset"),
        (["--dataset", "audiocaps", str(audiocaps)], "2 clips it lists have no file"),
        (["--dataset", "clotho", str(clotho), "--prompt", "no slot"], "--prompt"),
    ):
        done = run_cli("eval", *args, "--model", "audioclip-tiny", env=env)  # no weights needed
        assert done.returncode != 0 and needle in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
