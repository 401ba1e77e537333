"""Queries of a model of several embedding spaces (MMV): the space each search is made in.

MMV compares video and audio in one space (`va`) and text with either in another (`vat`).
Its rows hold the parts side by side (`EncoderSpec.spaces`), each of unit length, or zero for
a modality outside the space (a text row has no `va` part). A search of the items of one
modality keeps, of the queries, the part of the first space that holds the modality and in
which every query has a part: sound and video meet in `va`, text meets either in `vat`. The
kept part is renormalised, so the inner product with a stored row is the cosine in that
space alone: two spaces never mix in a score. Models of one space pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from xsearch.errors import UsageError
from xsearch.models.spec import EncoderSpec, Space


def space_for(spaces: Sequence[Space], rows: np.ndarray, modality: str) -> Space:
    """The first of `spaces` that holds `modality` and a part of every row of `rows`."""
    for space in spaces:
        parts = rows[:, space.start : space.stop]
        if modality in space.modalities and bool(np.all(np.abs(parts).max(axis=1) > 0)):
            return space
    raise UsageError(f"these queries share no space with the {modality} items of this model")


def in_space(rows: np.ndarray, space: Space) -> np.ndarray:
    """`rows` with only their `space` part, each renormalised to unit length."""
    out = np.zeros_like(rows, dtype=np.float32)
    part = rows[:, space.start : space.stop].astype(np.float32)
    norms = np.linalg.norm(part, axis=1, keepdims=True)
    out[:, space.start : space.stop] = part / np.maximum(norms, np.float32(1e-12))
    return out


def rows_for(spec: EncoderSpec, rows: np.ndarray, modality: str) -> np.ndarray:
    """Query rows ready to score the items of `modality`, each on its own (evaluation)."""
    if not spec.spaces:
        return rows
    return in_space(rows, space_for(spec.spaces, rows, modality))


def queries_for(
    spec: EncoderSpec,
    rows: np.ndarray,
    weights: Sequence[float] | None,
    modalities: Sequence[str],
) -> np.ndarray | Mapping[str, np.ndarray]:
    """The query rows fused into one unit vector (see `fuse`); for a model of several spaces,
    one such vector per modality searched, each in the space that modality is compared in."""
    from xsearch.search.engine import fuse

    if not spec.spaces:
        return fuse(rows, list(weights) if weights is not None else None)
    w = list(weights) if weights is not None else None
    return {m: fuse(in_space(rows, space_for(spec.spaces, rows, m)), w) for m in modalities}
