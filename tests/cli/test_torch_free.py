"""Commands that have nothing to embed, and a text query on a CPU, never import torch: usage
errors, bad filters and a re-ingest of unchanged files answer before any model is built."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import xsearch
from tests.helpers.cli import ROOT
from tests.helpers.media_tree import make_media

pytestmark = pytest.mark.slow

# Runs the command line in this interpreter, then reports what it imported.
_RUNNER = """
import json, sys
from xsearch.cli.main import app
try:
    app(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "torch": "torch" in sys.modules,
                  "open_clip": "open_clip" in sys.modules}), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """An index of a few files, built with the tiny AudioCLIP's random weights."""
    base = tmp_path_factory.mktemp("torch-free")
    env = {"XSEARCH_HOME": str(base / "indexes"), "XSEARCH_CACHE": str(base / "cache")}
    media = make_media(base / "media")
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        index = xsearch.open("tiny", create=True, weights="random", config="audioclip-tiny")
        index.ingest([media])
    finally:
        for key, value in old.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    return env, media


def _run(env: dict[str, str], *args: str) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "COLUMNS": "200"},
        cwd=ROOT,
        timeout=300,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report, done.stdout + done.stderr


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["query", "--index", "tiny", "--text", "dog", "-k", "0"], 2, "-k: must be at least 1"),
        (["query", "--index", "tiny", "--text", "dog", "--where", "bad ="], 2, "--where"),
        (["query", "--index", "tiny", "--text", "dog", "--target", "nope"], 2, "unknown target"),
        (["query", "--index", "nothere", "--text", "dog"], 2, "no index"),
        (["query", "--index", "tiny", "--text", "dog", "--precision", "fp8"], 2, "--precision"),
        (["query", "--index", "tiny", "--image", "missing.jpg"], 1, "missing.jpg"),
    ],
)
def test_usage_errors_answer_without_torch(home, args, code, message):
    env, _ = home
    report, output = _run(env, *args)
    assert report["code"] == code and message in output
    assert not report["torch"], f"{args} imported torch"


def test_a_re_ingest_of_unchanged_files_loads_no_model(home):
    env, media = home
    report, output = _run(env, "ingest", "--index", "tiny", str(media), "--json")
    assert report["code"] in (0, None, 1), output  # 1: the media tree holds broken files
    assert '"unchanged": 5' in output
    assert not report["torch"]


def test_a_text_query_on_a_cpu_runs_without_torch(home):
    env, _ = home
    report, output = _run(env, "query", "--index", "tiny", "--text", "a dog", "--json")
    assert report["code"] in (0, None), output
    assert json.loads(output.splitlines()[0])["rank"] == 1
    assert not report["torch"] and not report["open_clip"]
