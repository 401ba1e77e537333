"""Identities that make ingest incremental: a file's content hash, and the model's."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from xsearch.models.weights import weights_sha256

if TYPE_CHECKING:
    from xsearch.models.spec import Encoder


def content_hash(path: Path) -> str:
    """blake2b-128 of the file's bytes: equal content, equal hash, whatever the name."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):  # hashlib.file_digest is Python 3.11+
            digest.update(chunk)
    return digest.hexdigest()


def model_identity(encoder: Encoder) -> dict[str, str]:
    """What an index records about the model that embedded it: its family, config and the
    weights' sha256 ("random" for random weights). Vectors of different weights live in
    different spaces, so an index refuses a model whose identity differs."""
    choice = encoder.weights
    weights = "random" if choice.is_random or choice.path is None else weights_sha256(choice.path)
    spec = encoder.spec
    return {"encoder": spec.family, "config": spec.config, "weights": weights}
