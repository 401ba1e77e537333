"""Facets: the common filters (kind, duration, date, folder, labels) as values rather than SQL.

`Facets.where()` writes them as a `where` filter over the asset columns, every value a SQL
literal made here (strings quoted, numbers checked finite), so that no value can change the
filter's meaning; a user's own `where` is kept beside them. `available(store)` says which
values an index holds, for a page to offer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow.compute as pc

from xsearch.errors import ParameterError
from xsearch.store.store import Store

KINDS = ("audio", "image", "video", "text")


@dataclass(frozen=True)
class Facets:
    kinds: tuple[str, ...] = ()  # the asset kinds kept (empty: all)
    min_duration: float | None = None  # seconds; files without a duration are left out
    max_duration: float | None = None
    modified_after: float | None = None  # the file's modification time, Unix seconds
    modified_before: float | None = None
    folder: str | None = None  # an absolute folder: its files and those of its subfolders
    labels: tuple[str, ...] = ()  # files with any of these labels

    def where(self, also: str | None = None) -> str | None:
        """The facets as SQL over the asset columns, and `also` (SQL) when given; None when
        nothing is filtered."""
        parts = [f"({also})"] if also else []
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ParameterError("kind", f"unknown kind {sorted(unknown)[0]!r}")
        if self.kinds:
            parts.append(f"kind IN ({', '.join(_text(k) for k in self.kinds)})")
        for column, low, high in (
            ("duration", self.min_duration, self.max_duration),
            ("mtime", self.modified_after, self.modified_before),
        ):
            if low is not None:
                parts.append(f"{column} >= {_number(column, low)}")
            if high is not None:
                parts.append(f"{column} <= {_number(column, high)}")
        if self.folder:
            folder = self.folder.rstrip("/") + "/"
            parts.append(f"starts_with(path, {_text(folder)})")
        if self.labels:
            listed = ", ".join(_text(label) for label in self.labels)
            parts.append(f"list_has_any(labels, [{listed}])")
        return " AND ".join(parts) or None


def _text(value: str) -> str:
    if "\x00" in value:
        raise ParameterError("facets", "a value holds a NUL character")
    return "'" + value.replace("'", "''") + "'"


def _number(name: str, value: float) -> str:
    number = float(value)
    if not math.isfinite(number):
        raise ParameterError(name, "must be a finite number")
    return repr(number)


def available(store: Store, labels: int = 100) -> dict:
    """What the index holds to filter by: assets per kind, the range of durations and of
    modification times, and its `labels` most common labels with their counts."""
    assets = store.assets

    def span(column: str) -> list[float] | None:
        low, high = pc.min_max(assets.column(column)).values()
        return None if low.as_py() is None else [low.as_py(), high.as_py()]

    kinds = {c["values"]: c["counts"] for c in pc.value_counts(assets.column("kind")).to_pylist()}
    flat = pc.list_flatten(assets.column("labels"))
    counted = pc.value_counts(flat).to_pylist() if len(flat) else []
    counted.sort(key=lambda c: (-c["counts"], c["values"]))
    return {
        "kinds": {k: kinds[k] for k in KINDS if kinds.get(k)},
        "duration": span("duration"),
        "modified": span("mtime"),
        "labels": [[c["values"], c["counts"]] for c in counted[:labels]],
    }
