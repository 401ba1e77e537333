"""Asking a resident process (`xsearch serve`, or `xsearch serve --local-only`) that holds an
index to search it, over the local channel (xsearch/api/channel.py).

A whole `xsearch query` must answer in a fraction of a second; loading numpy, DuckDB, FAISS
and the model takes longer than that. So this module imports the standard library only, and
`search_resident` either returns the resident process's answer or None, meaning "no resident
process to ask: search in this process"; errors that are the user's (a bad `k`, `where` or
target) are raised as the same exceptions, with the same messages, as `Index.search` raises.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xsearch.api.channel import PROTOCOL, channel_dir, decode_error, peer_uid, socket_path, unsafe
from xsearch.api.channel import owner_uid as _owner_uid
from xsearch.search.hit import Hit, Hits
from xsearch.store.location import index_dir

__all__ = ["Hits", "ResidentAnswer", "search_resident"]

CONNECT_TIMEOUT = 2.0  # seconds: a live resident process accepts at once


@dataclass(frozen=True)
class ResidentAnswer:
    """A resident process's answer: its hits, the generation it searched, its process id and
    whether the index has random weights (then the rankings mean nothing)."""

    hits: Hits
    generation: int
    pid: int
    random_weights: bool


class _NotAnswered(Exception):
    """The query cannot go to, or came back unusable from, a resident process."""


def search_resident(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    timeout: float = 60.0,
    **query: Any,
) -> ResidentAnswer | None:
    """Search index `name` (under `root`, as `open_index`) in the resident process that holds
    it, with the keyword arguments of `Index.search` (query files are taken relative to this
    process's working directory). None when there is no usable one: no socket, nobody
    listening, an unsafe channel directory, no answer within `timeout` seconds, or a failure
    that is not the user's; then search in this process. The user's errors are raised."""
    directory = index_dir(name, Path(root) if root else None)  # a bad name fails as in-process
    if not directory.is_dir():
        return None  # no index: this process says so in its own words
    try:
        files: dict[str, str] = {}  # absolute path sent -> the path as given, for messages
        like = query.pop("like", ())
        args = {
            **query,  # target, k, where and the other options, as they are
            "text": _pairs(query.get("text", ()), str),
            **{m: _files(query.get(m, ()), files) for m in ("image", "audio", "video")},
            "like": _pairs([like] if isinstance(like, int) else like, int),
        }
        answer = _ask(directory, {"v": PROTOCOL, "op": "search", "args": args}, timeout)
        if "error" in answer:
            error = decode_error(_as_given(answer["error"], files))
            if error is None:
                return None  # the resident process failed: this process may not
            raise error
        pid, generation = answer["pid"], answer["generation"]
        if not (isinstance(pid, int) and isinstance(generation, int)):
            return None
        source = f"resident process {pid}"
        hits = Hits([Hit.from_dict(h) for h in answer["hits"]], generation, source)
        return ResidentAnswer(hits, generation, pid, bool(answer["random_weights"]))
    except (_NotAnswered, OSError, ValueError, KeyError, TypeError):
        return None


def _ask(index_directory: Path, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send `request` to the resident process of the index at `index_directory`; its answer."""
    directory = channel_dir()
    if unsafe(directory):
        raise _NotAnswered
    line = json.dumps(request, allow_nan=False).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(os.fspath(socket_path(index_directory, directory)))
        uid = peer_uid(sock)
        if uid is not None and uid != _owner_uid():
            raise _NotAnswered  # not this user's process: tell it nothing
        sock.settimeout(timeout)
        sock.sendall(line)
        with sock.makefile("rb") as answer:
            reply = answer.readline()
    if not reply.endswith(b"\n"):
        raise _NotAnswered  # closed without answering: e.g. it refused this process
    decoded = json.loads(reply)
    if not isinstance(decoded, dict):
        raise _NotAnswered
    return decoded


def _pairs(value: Any, kind: type) -> list[list[Any]]:
    """A query argument of `Index.search` (a value, a (value, weight) pair, or a sequence of
    them) -> [[value, weight], ...]; _NotAnswered for any other shape, which `Index.search`
    then judges in this process."""
    # the shapes Index.search tells apart, judged the same way (xsearch/api/index.py)
    single = isinstance(value, (str, os.PathLike, int)) or (
        isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], (str, os.PathLike))
    )
    if not single and not isinstance(value, Sequence):
        raise _NotAnswered
    pairs = []
    for query in [value] if single else value:
        query, weight = query if isinstance(query, tuple) and len(query) == 2 else (query, 1.0)
        if isinstance(query, os.PathLike):
            query = os.fspath(query)
        if not isinstance(query, kind) or not isinstance(weight, (int, float)):
            raise _NotAnswered
        pairs.append([query, float(weight)])
    return pairs


def _files(value: Any, given: dict[str, str]) -> list[list[Any]]:
    """File queries with absolute paths (the resident process has its own working folder)."""
    pairs = _pairs(value, str)
    for pair in pairs:
        absolute = os.path.abspath(pair[0])
        given[absolute] = pair[0]
        pair[0] = absolute
    return pairs


def _as_given(error: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    """An error answer naming the query files as the caller gave them, as `Index.search` in
    this process would have."""
    renamed = dict(error)
    for field in ("message", "problem"):
        text = renamed.get(field)
        if not isinstance(text, str):
            continue
        for absolute in sorted(files, key=len, reverse=True):
            text = text.replace(absolute, files[absolute])
        renamed[field] = text
    return renamed
