"""Reading path lists and describing results in words, the same for every shell."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from xsearch.ingest.pipeline import IngestReport


def read_path_list(stream: TextIO) -> list[str]:
    """Paths from a newline-separated list (as `find ... | xsearch ingest -` gives)."""
    from xsearch.ingest.scan import read_file_list

    return [str(p) for p in read_file_list(stream)]


def ingest_notes(report: IngestReport, prune_option: str = "prune=True") -> list[str]:
    """What the user may want to act on after an ingest: files left out for their type, and
    indexed files that are gone (kept until pruned with `prune_option`)."""
    notes = []
    unsupported = list(getattr(report, "unsupported", []) or [])
    if unsupported:
        counts: dict[str, int] = {}
        for path in unsupported:
            suffix = Path(path).suffix.lower() or "(no extension)"
            counts[suffix] = counts.get(suffix, 0) + 1
        kinds = ", ".join(f"{s}: {n}" for s, n in sorted(counts.items(), key=lambda c: -c[1]))
        plural = "s" if len(unsupported) != 1 else ""
        notes.append(f"{len(unsupported)} file{plural} of unsupported types left out ({kinds})")
    missing = getattr(report, "missing", 0) or 0
    if missing:
        plural = "s are" if missing != 1 else " is"
        notes.append(f"{missing} indexed file{plural} gone; ingest with {prune_option} to drop")
    return notes
