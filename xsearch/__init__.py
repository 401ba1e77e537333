"""xsearch: cross-modal media search in AudioCLIP's shared text/image/audio space.

Importing the package is cheap; the model, media and index layers load their heavy
dependencies (torch, PyAV, FAISS) only when used.
"""

import os

__version__ = "0.1.0"

# A query runs three thread pools in turn on the same cores: torch's (the text encoder),
# numpy's OpenBLAS (exact search) and FAISS's OpenMP. Each keeps its threads spinning after
# its work (OpenBLAS for about 2^28 cycles), taking the cores from the next one: on 2 cores a
# text query over 100k items took 79 ms instead of 36. Shorter spins fix it; the libraries
# read these once, when they load, so they are set here, before xsearch imports them (a
# setting already in the environment wins).
for _name, _value in (("OPENBLAS_THREAD_TIMEOUT", "4"), ("GOMP_SPINCOUNT", "10000")):
    os.environ.setdefault(_name, _value)


def open(name: str, root=None, device: str = "auto", gpu: bool = False, fp16_index: bool = False):
    """Open the index `name` for searching: `xsearch.open("media").search(text="rain")`.
    `gpu`: search on the GPU(s) with faiss-gpu; `fp16_index`: float16 vectors there."""
    from xsearch.api import open_index

    return open_index(name, root, device, gpu, fp16_index)
