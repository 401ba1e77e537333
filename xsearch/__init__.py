"""xsearch: cross-modal media search in AudioCLIP's shared text/image/audio space.

Importing the package is cheap; the model, media and index layers load their heavy
dependencies (torch, PyAV, FAISS) only when used.
"""

__version__ = "0.1.0"
