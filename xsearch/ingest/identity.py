"""Identities that make ingest incremental: a file's content hash, and the model's."""

from __future__ import annotations

import hashlib
from pathlib import Path


def content_hash(path: Path) -> str:
    """blake2b-128 of the file's bytes: equal content, equal hash, whatever the name."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


def model_identity(encoder) -> dict[str, str]:
    """What an index records about the model that embedded it. Vectors of different weights
    live in different spaces, so an index refuses a model whose identity differs."""
    choice = encoder.weights
    if choice.is_random:
        weights = "random"
    else:
        sidecar = choice.path.with_name(choice.path.name + ".sha256")
        if sidecar.is_file():
            weights = sidecar.read_text().split()[0]
        else:
            with open(choice.path, "rb") as f:
                weights = hashlib.file_digest(f, "sha256").hexdigest()
    return {"encoder": encoder.name, "config": encoder.config.name, "weights": weights}
