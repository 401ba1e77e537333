"""A search result, and a page of them that says where it came from.

In a module of its own, with no heavy import: a process that only shows results (the command
line reading a resident process's answer) must not load numpy, pyarrow or DuckDB.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

IN_PROCESS = "in-process"


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float  # calibrated relevance: comparable across modalities (search/calibrate.py)
    cosine: float  # the raw cosine of the query and the matched item
    path: str
    modality: str  # of the matched item
    start: float | None  # seconds: an audio window, or the time of a video frame
    end: float | None
    labels: list[str]
    asset_id: int
    item_id: int
    kind: str  # of the asset: video, audio, image, text
    index: str | None = None  # the index it came from, in a search of several (search_indexes)

    def as_dict(self) -> dict:
        out = asdict(self)
        if self.index is None:
            del out["index"]  # a search of one index gives the keys it always gave
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hit:
        """The hit `as_dict` gave (KeyError or TypeError for anything else)."""
        given = [f for f in fields(cls) if f.name in data or f.default is MISSING]
        hit = cls(**{f.name: data[f.name] for f in given})
        if not isinstance(hit.labels, list):
            raise TypeError("labels must be a list")
        if not isinstance(hit.index, (str, type(None))):
            raise TypeError("index must be a name")
        return hit


class Hits(list):
    """Hits in rank order, and where they came from: the index generation that was searched,
    and `source`: "in-process", or "resident process <pid>" for an answer from a running
    `xsearch serve` (see xsearch.api.resident)."""

    def __init__(
        self, hits: Iterable[Hit] = (), generation: int = 0, source: str = IN_PROCESS
    ) -> None:
        super().__init__(hits)
        self.generation = generation
        self.source = source
