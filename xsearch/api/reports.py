"""Reading path lists and describing results in words, the same for every shell."""

from __future__ import annotations

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
    from xsearch.ingest.scan import summarize_unsupported

    notes = []
    if report.interrupted:
        notes.append(
            f"interrupted: what was embedded is published (generation {report.generation}); "
            "the same ingest again goes on from there"
        )
    unsupported = summarize_unsupported(report.unsupported)
    if unsupported:
        notes.append(f"{unsupported} left out")
    missing = report.missing
    if missing:
        plural = "s are" if missing != 1 else " is"
        notes.append(f"{missing} indexed file{plural} gone; ingest with {prune_option} to drop")
    return notes
