"""`xsearch query` asks a resident process (`xsearch serve`, `xsearch serve --local-only`) when
one holds the index: the same output as an in-process search, the generation named, the same
one-line errors; and it searches in-process whenever the options ask for that."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from queue import Queue

import pytest
from rich.console import Console
from typer.testing import CliRunner

import xsearch.api
from tests.helpers.media_tree import make_media
from xsearch.api import serve_locally
from xsearch.cli import query as query_module
from xsearch.cli.main import app

runner = CliRunner()


@pytest.fixture
def served(fake_media_index, runtime_dir, monkeypatch):
    """An index of the fake model held by a resident channel in this process. The command
    line cannot load the fake model itself: whatever it answers came from the resident."""
    index = fake_media_index("audioclip-like")
    monkeypatch.setenv("XSEARCH_HOME", str(index.dir.parent))
    with serve_locally(index) as server:
        yield index, server


def invoke(*args: str):
    return runner.invoke(app, ["query", "-i", "media", *args], env={"COLUMNS": "200"})


def test_json_lines_are_the_in_process_hits_with_their_generation(served):
    index, _ = served
    done = invoke("--text", "rain^2", "--text", "dog", "--target", "all", "-k", "3", "--json")
    assert done.exit_code == 0, done.output
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    alone = index.search(text=[("rain", 2.0), ("dog", 1.0)], target="all", k=3)
    assert lines == [{**hit.as_dict(), "generation": 1} for hit in alone] and len(lines) == 3


def test_a_terminal_hears_which_generation_answered_and_who(served, monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(query_module, "err", Console(file=stream, force_terminal=True))
    done = invoke("--text", "rain")
    assert done.exit_code == 0, done.output
    assert "bark.wav" in done.stdout or "storm.wav" in done.stdout
    said = stream.getvalue()
    assert "generation 1 · answered by the resident process" in said
    assert f"(pid {os.getpid()})" in said


@pytest.mark.parametrize(
    "args, message",
    [
        (["-k", "0"], "error: -k: must be at least 1"),
        (["--where", "no_such_column = 1"], "error: --where:"),
        (["--target", "smell"], "error: "),
    ],
)
def test_usage_errors_read_the_same_either_way(served, args, message):
    resident = invoke("--text", "rain", *args)
    alone = invoke("--text", "rain", "--in-process", *args)  # fails before any model loads
    assert resident.exit_code == alone.exit_code == 2
    error = resident.stderr.splitlines()[-1]
    assert message in error and error == alone.stderr.splitlines()[-1]
    assert resident.stderr.count("error:") == 1


@pytest.mark.parametrize(
    "option", [["--in-process"], ["--device", "cpu"], ["--weights", "random"], ["--gpu"]]
)
def test_options_about_how_to_search_stay_in_process(served, monkeypatch, option):
    def not_asked(*args, **kwargs):
        raise AssertionError("the resident process was asked")

    monkeypatch.setattr(xsearch.api, "search_resident", not_asked, raising=False)
    done = invoke("--text", "rain", "-k", "0", *option)
    assert "the resident process was asked" not in str(done.exception or "")
    assert done.exit_code == 2, done.output


def test_without_a_resident_process_the_search_runs_here(fake_media_index, runtime_dir):
    index = fake_media_index("audioclip-like")
    done = runner.invoke(
        app,
        ["query", "-i", "media", "--text", "rain", "-k", "0"],
        env={"XSEARCH_HOME": str(index.dir.parent)},
    )
    assert done.exit_code == 2 and "-k: must be at least 1" in done.stderr


def test_local_only_takes_no_host_or_port():
    done = runner.invoke(app, ["serve", "--local-only", "--port", "9000"])
    assert done.exit_code == 2 and "do not apply with --local-only" in done.stderr


# --- whole processes ---------------------------------------------------------------------------

HEAVY = ("numpy", "torch", "pyarrow", "duckdb", "faiss")


def query_process(home: Path, env: dict[str, str], *args: str) -> tuple[int, str, str, list[str]]:
    """`xsearch query ARGS` in a process of its own: exit code, stdout, stderr, and the heavy
    libraries it loaded."""
    code = (
        "import sys\n"
        "from xsearch.cli.main import run\n"
        f"sys.argv = ['xsearch', 'query', '-i', 'media', *{list(args)!r}]\n"
        "try:\n    run()\n"
        "finally:\n"
        f"    heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "    print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "XSEARCH_HOME": str(home), "COLUMNS": "200"},
        timeout=300,
    )
    stderr, _, heavy = done.stderr.rpartition("HEAVY=")
    return done.returncode, done.stdout, stderr, [m for m in heavy.strip().split(",") if m]


@pytest.fixture(scope="module")
def home(tmp_path_factory, tiny_audioclip) -> Path:
    """XSEARCH_HOME with index `media`, built with the tiny AudioCLIP's random weights (what
    the command line loads by itself for such an index)."""
    from xsearch.ingest.pipeline import IngestOptions, ingest
    from xsearch.ingest.scan import find_files

    base = tmp_path_factory.mktemp("resident")
    media = make_media(base / "media")
    ingest(find_files([media]), base / "home" / "media", tiny_audioclip, IngestOptions(workers=0))
    return base / "home"


@contextmanager
def server_process(home: Path, env: dict[str, str], *args: str) -> Iterator[Queue[str]]:
    """`xsearch serve ARGS -i media` running; yields its stdout lines. Stopped with Ctrl+C,
    which must end it cleanly."""
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("xsearch")), "serve", *args, "-i", "media"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env, "XSEARCH_HOME": str(home)},
    )  # fmt: skip
    lines: Queue[str] = Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in server.stdout], daemon=True).start()
    try:
        yield lines
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0 and "Traceback" not in stderr, stderr


@pytest.fixture
def process_env():
    runtime = Path(tempfile.mkdtemp(prefix="xsrt"))
    yield {"XDG_RUNTIME_DIR": str(runtime)}, runtime
    shutil.rmtree(runtime, ignore_errors=True)


@pytest.mark.slow  # a resident `xsearch serve --local-only` and queries, in real processes
def test_query_against_a_running_serve_local_only(home, process_env):
    env, runtime = process_env
    query = ("--text", "rain", "--target", "audio", "--json")
    code, alone, alone_err, alone_heavy = query_process(home, env, *query)
    assert code == 0, alone_err
    assert "numpy" in alone_heavy and "random weights" in alone_err.lower()
    bad_k = query_process(home, env, "--text", "rain", "-k", "0")

    with server_process(home, env, "--local-only") as lines:
        ready = lines.get(timeout=120)
        assert "holding index media" in ready, ready
        socket_file = Path(ready.split(" on ", 1)[1].split(" (Ctrl+C")[0])
        assert socket_file.parent == runtime / "xsearch" and socket_file.exists()

        code, resident, resident_err, resident_heavy = query_process(home, env, *query)
        assert code == 0, resident_err
        assert resident == alone, "the same JSON lines either way"
        assert all(json.loads(line)["generation"] == 1 for line in resident.splitlines())
        assert resident_heavy == [], "answered without loading the model or the index"
        assert "random weights" in resident_err.lower(), "the banner still shows"
        again = query_process(home, env, "--text", "rain", "-k", "0")
        assert again[0] == bad_k[0] == 2
        error = "error: -k: must be at least 1"
        assert again[2].splitlines()[-1] == bad_k[2].splitlines()[-1] == error
    assert not socket_file.exists(), "Ctrl+C removes the socket"


@pytest.mark.slow  # `xsearch serve` and a query, in real processes
def test_the_http_server_answers_local_queries_too(home, process_env):
    env, runtime = process_env
    query = ("--text", "dog", "--target", "all", "--json")
    alone = query_process(home, env, *query)
    with server_process(home, env, "--port", "0") as lines:
        assert "serving index media on http://" in lines.get(timeout=120)
        local = lines.get(timeout=10)
        assert "`xsearch query` on index media asks this server" in local, local
        code, resident, _, heavy = query_process(home, env, *query)
        assert (code, resident, heavy) == (0, alone[1], [])
    assert list((runtime / "xsearch").iterdir()) == [], "socket and lock removed on exit"
