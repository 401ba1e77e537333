"""xsearch: cross-modal media search in AudioCLIP's shared text/image/audio space.

Importing the package is cheap; the model, media and index layers load their heavy
dependencies (torch, PyAV, FAISS) only when used.
"""

__version__ = "0.1.0"


def open(name: str, root=None, device: str = "auto"):
    """Open the index `name` for searching: `xsearch.open("media").search(text="rain")`."""
    from xsearch.api import open_index

    return open_index(name, root, device)
