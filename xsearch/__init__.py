"""xsearch: cross-modal media search in AudioCLIP's shared text/image/audio space.

Importing the package is cheap; the model, media and index layers load their heavy
dependencies (torch, PyAV, FAISS) only when used.
"""

__version__ = "0.1.0"


def open(name: str, root=None, device: str = "auto", gpu: bool = False, fp16_index: bool = False):
    """Open the index `name` for searching: `xsearch.open("media").search(text="rain")`.
    `gpu`: search on the GPU(s) with faiss-gpu; `fp16_index`: float16 vectors there."""
    from xsearch.api import open_index

    return open_index(name, root, device, gpu, fp16_index)
