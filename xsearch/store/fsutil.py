"""Durable file operations: what makes a commit survive a crash or a power loss."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (a rename or a new file is not durable until this)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def crashpoint(step: str) -> None:
    """Fault injection for the crash tests: with XSEARCH_CRASH_AT=<step>, the process kills
    itself (SIGKILL: no cleanup runs) when it reaches that step of a commit."""
    if os.environ.get("XSEARCH_CRASH_AT") == step:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
