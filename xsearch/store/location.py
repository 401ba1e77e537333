"""Where a named index lives. Standard library only: the command line finds an index's
directory (to ask a resident process about it) without loading the store's dependencies."""

from __future__ import annotations

import os
import re
from pathlib import Path

from xsearch.errors import UsageError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def index_root() -> Path:
    """`XSEARCH_HOME`, else ./indexes."""
    return Path(os.environ.get("XSEARCH_HOME") or "indexes")


def index_dir(name: str, root: Path | None = None) -> Path:
    """The directory of index `name` under `root` (default `index_root()`)."""
    if not _NAME.fullmatch(name):
        raise UsageError(f"bad index name {name!r}: use letters, digits, '.', '_' and '-'")
    return (root or index_root()) / name
