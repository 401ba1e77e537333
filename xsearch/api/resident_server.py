"""The resident side of the local channel (xsearch/api/channel.py): a process that holds an
index answers this user's `xsearch query` over a Unix socket, one connection per thread.

Only this user's processes reach it: the socket (mode 600) sits in a private directory that
is checked before use, and on Linux each connection's user id is checked as well. A request
is bounded in size (channel.MAX_REQUEST) and time (REQUEST_TIMEOUT); every answer is one line,
errors included, never a traceback.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xsearch.api.channel import (
    INTERNAL,
    MAX_REQUEST,
    PROTOCOL,
    channel_dir,
    encode_error,
    owner_uid,
    peer_uid,
    socket_path,
    unsafe,
)
from xsearch.errors import UsageError

if TYPE_CHECKING:
    from xsearch.api.index import Index

__all__ = ["ChannelBusy", "LocalServer", "serve_locally"]

REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request or read the answer


class ChannelBusy(UsageError):
    """Another process already answers for this index on the local channel."""


class _BadRequest(Exception):
    """A request this side does not understand (answered as an internal error)."""


class LocalServer:
    """The local channel of one index, bound and listening: `path` is its socket, `uid` the
    only user id whose connections it answers."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.uid = owner_uid()
        self.following = threading.Lock()  # one refresh at a time
        directory = _private_dir()
        self.path = socket_path(index.dir, directory)
        self._lock_path = self.path.with_suffix(".lock")
        self._lock = _hold(self._lock_path, index.name)
        try:
            _clear_stale(self.path, index.name)
            self._server = _Server(os.fspath(self.path), self)
        except BaseException:
            _release(self._lock, self._lock_path)
            raise
        info = os.stat(self.path)
        self._identity = (info.st_dev, info.st_ino)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"xsearch-local-{index.name}",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, and remove the socket (if it is still this server's)."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        try:
            info = os.stat(self.path)
            if (info.st_dev, info.st_ino) == self._identity:
                os.unlink(self.path)
        except OSError:
            pass
        _release(self._lock, self._lock_path)

    # --- answers ---------------------------------------------------------------------------

    def answer(self, line: bytes) -> dict[str, Any]:
        """The answer to one request line (see xsearch/api/resident.py for the asking side)."""
        try:
            if len(line) > MAX_REQUEST:
                raise _BadRequest(f"request larger than {MAX_REQUEST} bytes")
            request = json.loads(line)
            if not isinstance(request, dict) or request.get("v") != PROTOCOL:
                raise _BadRequest("unknown protocol version")
            if request.get("op") == "hello":
                return {"pid": os.getpid(), "index": self.index.name}
            if request.get("op") != "search":
                raise _BadRequest("unknown request")
            args = _search_args(request.get("args"))
            with self.following:
                self.index.refresh()  # answer from the newest generation, as the HTTP API does
            hits = self.index.search(**args)
            return {
                "generation": hits.generation,
                "pid": os.getpid(),
                "random_weights": self.index.random_weights,
                "hits": [hit.as_dict() for hit in hits],
            }
        except _BadRequest as e:
            return {"error": {"kind": INTERNAL, "message": f"bad request: {e}"}}
        except Exception as e:
            return {"error": encode_error(e)}


@contextmanager
def serve_locally(index: Index) -> Iterator[LocalServer]:
    """Answer this user's `xsearch query` (and `search_resident`) about `index` from this
    process while the block runs; its socket is removed on exit. UsageError when the channel
    directory is unsafe, ChannelBusy when another process already answers for the index."""
    server = LocalServer(index)
    server.start()
    try:
        yield server
    finally:
        server.close()


def _private_dir() -> Path:
    """The channel directory, created (mode 700) if need be and checked."""
    directory = channel_dir()
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise UsageError(f"cannot create {directory} for the local channel: {e.strerror}") from None
    problem = unsafe(directory)
    if problem:
        raise UsageError(f"{directory} {problem}: not opening the local channel there")
    return directory


def _hold(lock_path: Path, name: str) -> int:
    """An exclusive lock on the index's channel for this process's lifetime (released by the
    system if it dies), so that two servers never replace each other's socket."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(10):
        try:
            fd = os.open(lock_path, flags, 0o600)
        except OSError as e:
            raise UsageError(f"cannot open {lock_path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise _busy(lock_path.with_suffix(".sock"), name) from None
        if _same_file(fd, lock_path):
            return fd
        os.close(fd)  # its holder removed it on the way out: lock the one there now
    raise UsageError(f"cannot lock {lock_path}")


def _release(fd: int, lock_path: Path) -> None:
    """Remove the lock file (still holding it, so no one else holds this one), then unlock."""
    if _same_file(fd, lock_path):
        os.unlink(lock_path)
    os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        info, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == (held.st_dev, held.st_ino)


def _clear_stale(path: Path, name: str) -> None:
    """Remove the socket a dead server left, once sure that nobody answers on it."""
    if not os.path.lexists(path):
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except OSError as e:
            if e.errno not in (errno.ECONNREFUSED, errno.ENOTSOCK, errno.ENOENT):
                raise UsageError(f"cannot use {path}: {e.strerror}") from None
        else:
            raise _busy(path, name)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _busy(path: Path, name: str) -> ChannelBusy:
    """The error for an index another process answers for, naming that process if it says."""
    request = json.dumps({"v": PROTOCOL, "op": "hello"}).encode() + b"\n"
    holder = "another process"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            probe.connect(os.fspath(path))
            probe.sendall(request)
            with probe.makefile("rb") as answer:
                pid = json.loads(answer.readline())["pid"]
        holder = f"process {int(pid)}"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return ChannelBusy(f"{holder} already answers local queries on index {name}")


# What a search request may carry: Index.search's keyword arguments, with their JSON types.
_PAIRS = {"text": str, "image": str, "audio": str, "video": str, "like": int}
_VALUES: dict[str, tuple[type, ...]] = {
    "target": (str,),
    "k": (int,),
    "where": (str, type(None)),
    "exclude_self": (bool,),
    "min_score": (int, float, type(None)),
    "nprobe": (int, type(None)),
    "ef": (int, type(None)),
    "k_factor": (int, float, type(None)),
    "per_file": (int, type(None)),
    "by_file": (bool,),
}


def _search_args(args: Any) -> dict[str, Any]:
    """A request's arguments, checked for shape, as `Index.search` takes them (its own checks
    judge their values, with the messages an in-process search gives)."""
    if not isinstance(args, dict) or set(args) - set(_PAIRS) - set(_VALUES):
        raise _BadRequest("unknown arguments")
    out: dict[str, Any] = {}
    for name, kind in _PAIRS.items():
        pairs = args.get(name, [])
        if not isinstance(pairs, list):
            raise _BadRequest(name)
        out[name] = []
        for pair in pairs:
            ok = isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], kind)
            if not ok or not isinstance(pair[1], (int, float)):
                raise _BadRequest(name)
            if name in ("image", "audio", "video") and not os.path.isabs(pair[0]):
                raise _BadRequest(f"{name}: files must be given by absolute path")
            out[name].append((pair[0], float(pair[1])))
    for name, kinds in _VALUES.items():
        if name in args:
            if not isinstance(args[name], kinds):
                raise _BadRequest(name)
            out[name] = args[name]
    return out


class _Handler(socketserver.StreamRequestHandler):
    timeout = REQUEST_TIMEOUT
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST + 1)
        answer = self.server.resident.answer(line)
        self.wfile.write(json.dumps(answer).encode() + b"\n")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True  # a slow client never keeps the process from stopping
    block_on_close = False
    request_queue_size = 64

    def __init__(self, path: str, resident: LocalServer) -> None:
        self.resident = resident
        super().__init__(path, _Handler)

    def server_bind(self) -> None:
        old = os.umask(0o177)  # the socket is created mode 600: no moment open to others
        try:
            super().server_bind()
        except OSError as e:
            raise UsageError(f"cannot listen on {self.server_address}: {e.strerror}") from None
        finally:
            os.umask(old)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Only this user's processes: a connection from any other user is closed unanswered."""
        uid = peer_uid(request)
        return uid is None or uid == self.resident.uid

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away or stalled: nothing to report, nothing to print."""
