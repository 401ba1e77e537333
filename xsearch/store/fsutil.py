"""Durable file operations: what makes a commit survive a crash or a power loss."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

# Called with each step name when set: tests/powerloss.py takes its power-loss images here.
crash_hook: Callable[[str], None] | None = None


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (a rename or a new file is not durable until this)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """Create `path` and its missing parents, each one's entry synced in its parent, so that a
    power loss cannot take away a folder a published generation lives in (nor leave an index
    folder without its data folder). Creating one that another process just made is fine."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        fsync_dir(folder.parent)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def crashpoint(step: str) -> None:
    """Fault injection for the crash tests: with XSEARCH_CRASH_AT=<step>, the process kills
    itself (SIGKILL: no cleanup runs) when it reaches that step of a commit."""
    if crash_hook is not None:
        crash_hook(step)
    if os.environ.get("XSEARCH_CRASH_AT") == step:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
