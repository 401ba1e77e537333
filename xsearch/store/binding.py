"""What an index is bound to besides its model: each modality's vector width, and the recipe
ingest cut its items with (window length, frame policy).

Both are recorded in the manifest by the first commit that knows them. A writer that asks for
other widths or another recipe is refused when it opens, and vectors of another width or of a
modality the index does not have are refused before a commit writes anything: one index never
mixes two kinds of vector, or items cut two ways.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from xsearch.errors import UsageError
from xsearch.store.manifest import Manifest
from xsearch.store.tables import MODALITIES

# What an index written before widths were recorded holds when it holds no vector to tell:
# AudioCLIP was then the only model.
AUDIOCLIP_WIDTHS = {"image": 1024, "audio": 1024, "text": 1024}


def ordered(widths: Mapping[str, int]) -> dict[str, int]:
    """`widths` with its modalities in the order image, audio, text."""
    return {m: int(widths[m]) for m in MODALITIES if m in widths}


def check_widths(widths: Mapping[str, int]) -> dict[str, int]:
    """`widths`, ordered, once each modality is known and each width positive."""
    for modality, width in widths.items():
        if modality not in MODALITIES:
            raise UsageError(f"unknown modality {modality!r}; use {', '.join(MODALITIES)}")
        if not isinstance(width, (int, np.integer)) or width < 1:
            raise UsageError(f"the width of {modality} vectors must be a positive integer")
    if not widths:
        raise UsageError("an index needs at least one modality")
    return ordered(widths)


def known_widths(directory: Path, manifest: Manifest | None) -> dict[str, int] | None:
    """The widths `manifest` records; for a manifest written before they were recorded, the
    width of its stored vectors (read from an embeddings file's schema) for every modality;
    None when neither tells."""
    if manifest is None:
        return None
    if manifest.widths:
        return ordered(manifest.widths)
    width = _stored_width(directory, manifest)
    return {m: width for m in MODALITIES} if width is not None else None


def index_widths(directory: Path, manifest: Manifest | None) -> dict[str, int]:
    """The index's widths (`known_widths`), else AudioCLIP's."""
    return known_widths(directory, manifest) or dict(AUDIOCLIP_WIDTHS)


def widths_of(vectors: Mapping[str, list[tuple[np.ndarray, np.ndarray]]]) -> dict[str, int]:
    """The widths that a first commit's vectors (modality -> parts of (ids, vectors)) imply
    when the writer told none: one width alone is taken, as before widths were recorded, for
    every modality; several are taken as they are."""
    found = {m: _width(parts[0][1]) for m, parts in vectors.items() if parts}
    widths = {m: w for m, w in found.items() if w is not None}
    if len(set(widths.values())) == 1:
        return {m: next(iter(widths.values())) for m in MODALITIES}
    return ordered(widths)


def widths_refusal(name: str, recorded: Mapping[str, int], asked: Mapping[str, int]) -> str | None:
    """Why a writer asking for `asked` widths may not write index `name`, or None."""
    if set(recorded) != set(asked):
        return (
            f"index {name} was built with {_listing(recorded)} vectors; this run asks for "
            f"{_listing(asked)} (use the same model, or another index)"
        )
    for modality, width in recorded.items():
        if asked[modality] != width:
            return (
                f"index {name} was built with {modality} vectors of width {width}; this run "
                f"asks for width {asked[modality]} (use the same model, or another index)"
            )
    return None


def recipe_refusal(name: str, recorded: Mapping, asked: Mapping) -> str | None:
    """Why a writer asking for recipe `asked` may not write index `name`, or None: the first
    setting (in name order) that differs."""
    for key in sorted(set(recorded) | set(asked)):
        if recorded.get(key) != asked.get(key):
            built = f"{key} {recorded[key]}" if key in recorded else f"no {key}"
            wanted = str(asked[key]) if key in asked else f"no {key}"
            return (
                f"index {name} was built with {built}; this run asks for {wanted} "
                "(use the same value, or another index)"
            )
    return None


def vectors_refusal(
    name: str, widths: Mapping[str, int], modality: str, vectors: np.ndarray
) -> str | None:
    """Why `vectors` of `modality` may not be added to index `name`, or None."""
    if modality not in widths:
        return f"index {name} has no {modality} vectors (it holds {_listing(widths)})"
    width = _width(vectors)
    if width != widths[modality]:
        got = f"width {width}" if width is not None else f"shape {np.shape(vectors)}"
        return (
            f"index {name} holds {modality} vectors of width {widths[modality]}; these have "
            f"{got} (use the same model, or another index)"
        )
    return None


def _width(vectors: np.ndarray) -> int | None:
    shape = np.shape(vectors)
    return int(shape[1]) if len(shape) == 2 else None


def _listing(widths: Mapping[str, int]) -> str:
    return ", ".join(widths)


def _stored_width(directory: Path, manifest: Manifest) -> int | None:
    """The width of the vectors of the first readable embeddings file: only its footer is
    read (a damaged file is caught when its vectors are read, against its checksum)."""
    import pyarrow.parquet as pq

    from xsearch.store.segments import local_role

    for role, entry in sorted(manifest.files.items()):
        if not local_role(role).startswith("embeddings/"):
            continue
        try:
            return pq.read_schema(directory / entry.path).field("embedding").type.list_size
        except Exception:  # missing or damaged: another file may tell
            continue
    return None
