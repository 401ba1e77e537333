"""The local channel between `xsearch query` and a resident process holding an index: where its
socket lives, who may use it, and the shape of its messages. Standard library only.

One Unix socket per index, named after a hash of the index directory's resolved path, in a
directory of this user's that no one else may enter: `$XDG_RUNTIME_DIR/xsearch`, else
`<tempdir>/xsearch-<uid>`. Both ends check that directory before use (a real directory, not
a link, owned by this user, no permission for group or others), and on Linux each end checks
the other's user id on the socket itself. Messages are one line of JSON each way.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any

from xsearch import errors
from xsearch.errors import ParameterError, XSearchError

PROTOCOL = 1  # the version both ends speak; a mismatch is answered as "not understood"
MAX_REQUEST = 1_000_000  # bytes in one request line
INTERNAL = "internal"  # the kind of error for anything that is not the user's to fix


def owner_uid() -> int:
    """The user whose processes may use the channel: this process's."""
    return os.getuid()


def channel_dir() -> Path:
    """Where the sockets live: `$XDG_RUNTIME_DIR/xsearch`, else `<tempdir>/xsearch-<uid>`."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return Path(runtime) / "xsearch"
    import tempfile  # only here: its import costs a few milliseconds

    return Path(tempfile.gettempdir()) / f"xsearch-{owner_uid()}"


def unsafe(directory: Path) -> str | None:
    """Why `directory` must not hold the channel's sockets, or None when it may: it must be a
    real directory (not a link), owned by this user, closed to group and others."""
    try:
        info = os.lstat(directory)
    except OSError as e:
        return e.strerror or "cannot be read"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != owner_uid():
        return "belongs to another user"
    if stat.S_IMODE(info.st_mode) & 0o077:
        return f"is open to other users (mode {stat.S_IMODE(info.st_mode):o}, needs 700)"
    return None


def socket_path(index_dir: Path, directory: Path) -> Path:
    """The socket of the index at `index_dir`: one per directory, whatever path names it."""
    resolved = os.fsencode(Path(index_dir).resolve())
    return directory / f"{hashlib.sha256(resolved).hexdigest()[:32]}.sock"


def peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process at the other end of `sock`, where the system says (Linux);
    None elsewhere, where the private directory alone keeps other users out."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, 12))
    return uid


# --- errors across the channel ---------------------------------------------------------------


def encode_error(error: BaseException) -> dict[str, Any]:
    """An error as an answer: the user's errors (xsearch.errors) by kind, message and exit
    code, so the asking side raises the same; anything else as one line of kind "internal"."""
    if not isinstance(error, XSearchError):
        first = (str(error).strip().splitlines() or [""])[0]
        return {"kind": INTERNAL, "message": f"unexpected {type(error).__name__}: {first}"}
    # a subclass defined elsewhere (StoreCorrupt, IndexLocked) goes as its base in xsearch.errors
    kind = next(c for c in type(error).__mro__ if c.__module__ == errors.__name__)
    out: dict[str, Any] = {
        "kind": kind.__name__,
        "message": str(error),
        "exit_code": error.exit_code,
    }
    if isinstance(error, ParameterError):
        out |= {"param": error.param, "problem": error.problem}
    return out


def decode_error(answer: dict[str, Any]) -> XSearchError | None:
    """The error an answer carries, to raise on this side; None for an internal one (or an
    answer this side does not understand)."""
    kind = getattr(errors, str(answer.get("kind")), None)
    message = answer.get("message")
    if not (isinstance(kind, type) and issubclass(kind, XSearchError)) or not isinstance(
        message, str
    ):
        return None
    if issubclass(kind, ParameterError):
        param, problem = answer.get("param"), answer.get("problem")
        if not (isinstance(param, str) and isinstance(problem, str)):
            return None
        error: XSearchError = kind(param, problem)
    else:
        error = kind(message)
    code = answer.get("exit_code")
    if isinstance(code, int) and code != error.exit_code:
        error.exit_code = code
    return error
