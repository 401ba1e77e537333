"""The local channel: a resident process answers as an in-process search does, only to this
user, and the asking side falls back (None) whenever the channel is missing, stale or unsafe."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers.fakes import FAKE_SPECS, copy_index, media_of, open_fake
from xsearch.api import IngestOptions, search_resident, serve_locally
from xsearch.api import channel as channel_module
from xsearch.api.channel import MAX_REQUEST, PROTOCOL, channel_dir, socket_path
from xsearch.api.resident_server import ChannelBusy
from xsearch.errors import ParameterError, UsageError
from xsearch.samples import audio_samples, write_wav

SHAPE = "audioclip-like"


pytestmark = pytest.mark.usefixtures("runtime_dir")  # each test its own channel directory


@pytest.fixture
def index(fake_media_index):
    return fake_media_index(SHAPE)


def ask(index, **query):
    return search_resident(index.dir.name, root=index.dir.parent, **query)


def dicts(hits):
    return [hit.as_dict() for hit in hits]


QUERIES = [
    dict(text="a dog on a walk", target="audio", k=4),
    dict(text=[("rain", 1.0), ("dog", -0.5)], target="all", k=3),
    dict(audio="dogs/bark.wav", target="video", exclude_self=True),
    dict(image=["rain/sky.png"], audio=[("rain/drops.wav", 2.0)], target="image", k=2),
    dict(text="storm", target="audio", where="start >= 10", min_score=-10.0),
]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q["target"])
def test_the_resident_process_answers_what_an_in_process_search_finds(
    fake_media_index, index, monkeypatch, query
):
    monkeypatch.chdir(media_of(index))  # query files relative to the asking process
    alone = fake_media_index(SHAPE).search(**query)
    with serve_locally(index):
        answer = ask(index, **query)
    assert answer is not None
    assert dicts(answer.hits) == dicts(alone) and len(alone) > 0
    assert answer.generation == alone.generation == 1
    assert answer.pid == os.getpid() and answer.hits.source == f"resident process {os.getpid()}"
    assert answer.random_weights is index.random_weights
    assert alone.source == "in-process"


def test_like_queries_and_item_ids_go_across(fake_media_index, index):
    item = int(index.store.item_ids("audio")[0])
    with serve_locally(index):
        answer = ask(index, like=item, target="audio", k=2)
        weighted = ask(index, like=[(item, 1.0)], text="rain", target="audio", k=2)
    assert answer is not None and weighted is not None
    assert dicts(answer.hits) == dicts(index.search(like=item, target="audio", k=2))
    assert answer.hits[0].item_id == item
    expected = index.search(like=[(item, 1.0)], text="rain", target="audio", k=2)
    assert dicts(weighted.hits) == dicts(expected)


@pytest.mark.parametrize(
    "query, kind",
    [
        (dict(text="rain", k=0), ParameterError),
        (dict(text="rain", where="no_such_column = 1"), ParameterError),
        (dict(text="rain", target="smell"), UsageError),
        (dict(target="audio"), UsageError),
        (dict(audio="dogs/no-such.wav"), Exception),
    ],
    ids=["k", "where", "target", "nothing", "missing-file"],
)
def test_user_errors_come_back_as_the_same_exception_and_message(index, monkeypatch, query, kind):
    monkeypatch.chdir(media_of(index))
    with pytest.raises(kind) as alone:
        index.search(**query)
    with serve_locally(index), pytest.raises(type(alone.value)) as resident:
        ask(index, **query)
    assert str(resident.value) == str(alone.value)
    assert getattr(resident.value, "param", None) == getattr(alone.value, "param", None)
    assert getattr(resident.value, "exit_code", 1) == getattr(alone.value, "exit_code", 1)


def test_an_internal_failure_is_one_line_and_the_asking_side_falls_back(index, monkeypatch):
    def broken(**query):
        raise RuntimeError("something\nwent wrong")

    with serve_locally(index) as server:
        monkeypatch.setattr(server.index, "search", broken)
        assert ask(index, text="rain") is None
        line = _raw(server.path, {"v": PROTOCOL, "op": "search", "args": {"text": [["a", 1]]}})
    error = json.loads(line)["error"]
    assert error == {"kind": "internal", "message": "unexpected RuntimeError: something"}


def test_the_answer_names_the_generation_it_searched(tmp_path, index):
    copy = copy_index(index, FAKE_SPECS[SHAPE], tmp_path)
    with serve_locally(copy):
        first = ask(copy, text="rain")
        new = tmp_path / "more"
        new.mkdir()
        write_wav(new / "tone.wav", audio_samples(seconds=1.0)["tone_440hz.wav"])
        writer = open_fake(copy.dir, FAKE_SPECS[SHAPE])
        writer.ingest([new], IngestOptions(workers=0))  # another writer, as another process
        second = ask(copy, text="rain", k=20)
    assert first is not None and second is not None
    assert (first.generation, second.generation) == (1, 2)
    assert any(Path(h.path).name == "tone.wav" for h in second.hits)
    assert writer.search(text="rain").generation == 2


def test_no_socket_means_no_resident_process(index, runtime_dir):
    assert ask(index, text="rain") is None
    assert not (runtime_dir / "xsearch").exists(), "asking creates nothing"


def test_a_stale_socket_is_no_resident_process_and_the_next_server_replaces_it(index):
    with serve_locally(index) as server:
        path = server.path
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(path))  # bound, never listening: what a killed server leaves
    stale.close()
    assert path.exists() and ask(index, text="rain") is None
    with serve_locally(index) as server:
        assert server.path == path
        assert ask(index, text="rain") is not None
    assert not path.exists(), "the server removes its socket on exit"
    assert list(path.parent.iterdir()) == [], "and its lock"


def test_one_server_per_index(index, fake_media_index):
    busy = f"process {os.getpid()} already answers local queries on index media"
    with serve_locally(index), pytest.raises(ChannelBusy, match=busy):
        serve_locally(fake_media_index(SHAPE)).__enter__()


def test_socket_and_directory_are_private_whatever_the_umask(index, runtime_dir):
    old = os.umask(0)
    try:
        with serve_locally(index) as server:
            assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600
            assert stat.S_IMODE(os.stat(server.path.parent).st_mode) == 0o700
            assert server.path.parent == runtime_dir / "xsearch"
    finally:
        os.umask(old)


def test_the_socket_is_named_after_the_index_directory_not_the_path_given(index, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(index.dir)
    directory = channel_dir()
    assert socket_path(link, directory) == socket_path(index.dir, directory)
    assert socket_path(index.dir.parent, directory) != socket_path(index.dir, directory)


def test_without_xdg_runtime_dir_the_channel_is_a_per_user_temp_folder(monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    expected = Path(tempfile.gettempdir()) / f"xsearch-{os.getuid()}"
    assert channel_dir() == expected


def test_a_directory_open_to_others_is_refused_by_both_sides(index, runtime_dir):
    with serve_locally(index) as server:
        os.chmod(server.path.parent, 0o750)
        try:
            assert ask(index, text="rain") is None, "the client does not use it"
        finally:
            os.chmod(server.path.parent, 0o700)
    os.chmod(runtime_dir / "xsearch", 0o711)
    with pytest.raises(UsageError, match="open to other users"):
        serve_locally(index).__enter__()


def test_a_directory_of_another_user_is_refused_by_both_sides(index, monkeypatch):
    with serve_locally(index):
        monkeypatch.setattr(channel_module, "owner_uid", lambda: os.getuid() + 1)
        assert ask(index, text="rain") is None
        with pytest.raises(UsageError, match="belongs to another user"):
            serve_locally(index).__enter__()


def test_a_symbolic_link_for_the_directory_is_refused(index, runtime_dir, tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    (runtime_dir / "xsearch").symlink_to(real)
    with pytest.raises(UsageError, match="symbolic link"):
        serve_locally(index).__enter__()
    assert ask(index, text="rain") is None
    assert list(real.iterdir()) == []


@pytest.mark.skipif(not hasattr(socket, "SO_PEERCRED"), reason="peer credentials: Linux")
def test_a_peer_of_another_user_is_dropped_unanswered(index):
    with serve_locally(index) as server:
        server.uid = os.getuid() + 1  # as if this process were another user
        assert ask(index, text="rain") is None
        assert _raw(server.path, {"v": PROTOCOL, "op": "hello"}) == b""
        server.uid = os.getuid()
        assert ask(index, text="rain") is not None


def test_requests_are_bounded_and_checked(index):
    with serve_locally(index) as server:
        huge = b'{"v": 1, "op": "search", "args": {"text": [["' + b"x" * MAX_REQUEST + b'"]]}}\n'
        assert b"bad request: request larger than" in _send(server.path, huge)
        assert b'"internal"' in _send(server.path, b"not json\n")
        relative = {"v": PROTOCOL, "op": "search", "args": {"audio": [["bark.wav", 1.0]]}}
        assert b"absolute path" in _raw(server.path, relative)
        unknown = {"v": PROTOCOL, "op": "search", "args": {"text": [["a", 1]], "shell": "rm"}}
        assert b"unknown arguments" in _raw(server.path, unknown)
        assert b"protocol" in _raw(server.path, {"v": PROTOCOL + 1, "op": "hello"})
        hello = json.loads(_raw(server.path, {"v": PROTOCOL, "op": "hello"}))
        assert hello == {"pid": os.getpid(), "index": index.name}


def test_the_asking_side_imports_no_heavy_library():
    code = (
        "import sys; from xsearch.api import search_resident, ResidentAnswer, Hits; "
        "import xsearch.api.resident; "
        "heavy = [m for m in ('numpy', 'torch', 'pyarrow', 'duckdb', 'faiss', 'av') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def _raw(path: Path, request: dict) -> bytes:
    return _send(path, json.dumps(request).encode() + b"\n")


def _send(path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(os.fspath(path))
        try:
            sock.sendall(data)
        except OSError:
            pass  # a server that stops reading a too-large request may close first
        with sock.makefile("rb") as answer:
            try:
                return answer.readline()
            except ConnectionResetError:
                return b""
