"""A checkpoint's sha256, computed once per version of the file.

Hashing half a gigabyte takes about 0.4 s, on every command that names the weights. The
digest is remembered in the user cache beside the file's device, inode, size and
modification time; while those are unchanged the file is taken to be unchanged (the test
make and rsync use), and any change has it hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from xsearch.models.weights import cache_dir, recorded_sha256, sha256_file


def _record_path(path: Path) -> Path:
    key = hashlib.sha256(os.fsencode(path.resolve())).hexdigest()[:32]
    return cache_dir() / "digests" / f"{key}.json"


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def checkpoint_sha256(path: Path) -> str:
    """The sha256 of the file at `path`: the one `xsearch model fetch` recorded beside it, or
    the remembered one while the file is unchanged, else computed (and remembered)."""
    recorded = recorded_sha256(path)
    if recorded is not None:
        return recorded
    record = _record_path(path)
    stamp = _stamp(path)
    try:
        known = json.loads(record.read_text(encoding="utf-8"))
        if known.get("stamp") == stamp and isinstance(known.get("sha256"), str):
            return known["sha256"]
    except (OSError, ValueError):
        pass  # none yet, or unreadable: compute it
    digest = sha256_file(path)
    if _stamp(path) == stamp:  # not changed while it was read
        _remember(record, {"path": str(path.resolve()), "stamp": stamp, "sha256": digest})
    return digest


def _remember(record: Path, entry: dict) -> None:
    """Best effort: a cache that cannot be written only costs the next run a hash."""
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        temp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(entry), encoding="utf-8")
        os.replace(temp, record)
    except OSError:
        pass
