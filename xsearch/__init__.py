"""xsearch: cross-modal media search in a shared text/image/audio embedding space.

    import xsearch
    index = xsearch.open("media", create=True)
    index.ingest(["~/media"])
    index.search(text="rain on a roof", target="audio")

The public API is `xsearch.api` (and the shortcuts below). Importing the package is cheap and
changes nothing in the host process; the model, media and index layers load their heavy
dependencies (torch, PyAV, FAISS) only when used.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xsearch.api.index import Index

__version__ = "0.1.0"

# A query runs three thread pools in turn on the same cores: torch's (the text encoder),
# numpy's OpenBLAS (exact search) and FAISS's OpenMP. Each keeps its threads spinning after
# its work (OpenBLAS for about 2^28 cycles), taking the cores from the next one: on 2 cores a
# text query over 100k items took 79 ms instead of 36. Shorter spins fix it.
THREAD_SETTINGS = {"OPENBLAS_THREAD_TIMEOUT": "4", "GOMP_SPINCOUNT": "10000"}


def tune_threads() -> dict[str, str]:
    """Shorten the spin of OpenBLAS's and OpenMP's idle threads, so that the model, numpy and
    FAISS do not take the cores from each other during a search. The libraries read these
    settings once, when they load: call this before importing numpy, torch or faiss (the
    `xsearch` command and server do). A setting already in the environment wins. Returns
    the settings in effect."""
    for name, value in THREAD_SETTINGS.items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in THREAD_SETTINGS}


def open(name: str, root: str | os.PathLike[str] | None = None, **options: Any) -> Index:
    """The index `name`: `xsearch.open("media").search(text="rain")`. Options as
    `xsearch.api.open_index` (create, weights, config, device, batch_size, gpu, fp16_index)."""
    from xsearch.api.index import open_index

    return open_index(name, root, **options)
