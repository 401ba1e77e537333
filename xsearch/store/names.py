"""The names of a generation's data files, defined once for writers, cleaners and `verify`.

Every file a commit writes under `data/` carries its generation in its name,
`<stem>-g<N>.<ext>` (`items-g3.parquet`, `faiss-audio-g3.index`, `manifest-g3.json`), so that
leftovers of a crashed commit and files of old generations can be told apart without reading
them. The manifest's kept copy (`manifest-gN.json`) follows the same pattern.
"""

from __future__ import annotations

import re

_GENERATION = re.compile(r"-g(\d+)")  # the first `-gN` of a name (a suffix may follow it)
_COPY_STEM, _COPY_EXT = "manifest", "json"


def generation_file(stem: str, generation: int, ext: str) -> str:
    """The name of generation `generation`'s file `stem` (e.g. `emb-audio`) of type `ext`."""
    return f"{stem}-g{generation}.{ext}"


def generation_of(name: str) -> int | None:
    """The generation a data file's name says it belongs to, or None for a foreign name."""
    match = _GENERATION.search(name)
    return int(match.group(1)) if match else None


def manifest_copy(generation: int) -> str:
    """The name of the kept copy of generation `generation`'s manifest (in `data/`)."""
    return generation_file(_COPY_STEM, generation, _COPY_EXT)


def manifest_copy_generation(name: str) -> int | None:
    """The generation whose kept manifest copy `name` is, or None when it is not one."""
    generation = generation_of(name)
    return generation if generation is not None and name == manifest_copy(generation) else None
