"""`xsearch eval` on a planted index: the table, JSON, the plot and the exact comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.cli import run_cli
from tests.helpers.eval_layouts import CLASSES, DIRECTIONS, build
from xsearch.store.rebuild import rebuild_indexes


@pytest.fixture
def home(tmp_path):
    rng = np.random.default_rng(0)

    def near(c):  # the class direction plus a little noise
        v = DIRECTIONS[c] + 0.05 * rng.standard_normal(1024).astype(np.float32)
        return v / np.linalg.norm(v)

    files = [([c], {"audio": [near(c)], "image": [near(c)]}) for c in CLASSES for _ in range(5)]
    build(tmp_path / "home" / "planted", files)
    return tmp_path


@pytest.mark.slow  # a real process
def test_eval_an_index(home):
    env = {"XSEARCH_HOME": str(home / "home")}
    out, plot = str(home / "e.json"), str(home / "pr.png")
    done = run_cli("eval", "--index", "planted", "--pairs", "audio:image,image:image",
                   "--out", out, "--plot", plot, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "audio" in done.stdout and "100.00" in done.stdout and "mAP" in done.stdout
    report = json.loads((home / "e.json").read_text())
    assert [(p["query"], p["result"]) for p in report["pairs"]] == [
        ("audio", "image"),
        ("image", "image"),
    ]
    for p in report["pairs"]:
        assert p["mAP"] == 1.0 and p["P@1"] == 1.0 and p["queries"] == 15
        assert len(p["pr_curve"]["recall"]) == 101
    assert (home / "pr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # a real process
def test_eval_compares_an_approximate_index_with_exact(home):
    env = {"XSEARCH_HOME": str(home / "home")}
    rebuild_indexes(home / "home" / "planted", "IVF3,Flat")
    done = run_cli("eval", "--index", "planted", "--pairs", "audio:image", "--nprobe", "1",
                   "--compare-exact", "--json", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (served,), (exact,) = report["pairs"], report["exact"]
    assert exact["mAP"] == 1.0 and served["mAP"] <= exact["mAP"]


@pytest.mark.slow  # a real process per error
def test_eval_errors(home):
    env = {"XSEARCH_HOME": str(home / "home")}
    for args, needle in (
        ([], "--index NAME or --dataset"),
        (["--index", "planted", "--pairs", "text:video"], "--pairs: bad pairing"),
        (["--index", "nothing"], "no index"),
        (["--index", "planted", "--relevance", "some"], "some"),
        (["--index", "planted", "--aggregate", "median"], "--aggregate: unknown aggregate"),
        (["--dataset", "esc51", str(home)], "--dataset: unknown dataset kind 'esc51'"),
    ):
        done = run_cli("eval", *args, env=env)
        assert done.returncode != 0 and needle in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


@pytest.mark.slow  # builds and evaluates a dataset twice, in real processes
def test_eval_a_dataset_end_to_end_with_the_tiny_model(tmp_path):
    """ESC-50 layout -> ingest with labels into eval-esc50 -> every pairing it has."""
    from tests.helpers.eval_layouts import write_esc50

    layout = write_esc50(tmp_path / "esc50", classes=3, per_class=2, folds=2)
    env = {"XSEARCH_HOME": str(tmp_path / "home")}
    args = ("eval", "--dataset", "esc50", str(layout.root), "-w", "random",
            "--config", "audioclip-tiny", "--device", "cpu", "--json")  # fmt: skip
    done = run_cli(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert "RANDOM weights" in done.stderr
    report = json.loads(done.stdout)
    assert report["index"] == "eval-esc50"
    pairs = {(p["query"], p["result"]): p for p in report["pairs"]}
    assert set(pairs) == {("text", "audio"), ("audio", "audio")}  # only audio items exist
    assert pairs[("text", "audio")]["queries"] == 3  # one query per class name
    assert pairs[("text", "audio")]["candidates"] == 6
    assert pairs[("audio", "audio")]["queries"] == 6
    for p in pairs.values():
        assert 0 <= p["mAP"] <= 1 and 0 <= p["P@1"] <= 1
    assert report["zero_shot"]["audio"]["items"] == 6
    assert report["zero_shot"]["audio"]["classes"] == 3
    again = run_cli(*args, env=env)  # the same dataset again: incremental, same numbers
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["pairs"] == report["pairs"]


@pytest.mark.slow  # real processes
def test_eval_table_is_whole_when_piped(home):
    """Piped, rich assumes 80 columns: the table must still come out whole, not squeezed."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "XSEARCH_HOME": str(home / "home")}
    env.pop("COLUMNS", None)  # as a user's pipe has it: no width to go by
    exe = Path(sys.executable).with_name("xsearch")
    args = ["eval", "--index", "planted", "--pairs", "audio:image", "--compare-exact"]
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if "P@1" in line)
    (row,) = [line for line in lines if line.startswith(("│", "|"))]  # one pairing
    columns = ("dataset", "query", "result", "P@1", "R@1", "mAP", "HR@1", "R@10", "MRR",
               "queries", "mAP exact", "Δ mAP")  # fmt: skip
    assert [c.strip() for c in re.split("[│┃|]", header)[1:-1]] == list(columns), done.stdout
    cells = [c.strip() for c in re.split("[│┃|]", row)[1:-1]]
    assert cells[:3] == ["planted", "audio", "image"] and len(cells) == len(columns)
    assert cells[-2:] == ["100.00", "+0.00"] and "…" not in done.stdout


def test_eval_help_names_every_dataset_kind():
    from xsearch.api import DATASET_KINDS

    done = run_cli("eval", "--help")
    assert done.returncode == 0, done.stderr
    assert all(kind in done.stdout for kind in DATASET_KINDS)
