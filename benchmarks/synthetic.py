"""Synthetic additions for the store benchmarks: audio files of 10 windows each, as an ingest
would commit them, with the vectors given."""

from __future__ import annotations

import numpy as np

from xsearch.store.store import Changes, Writer

PER_ASSET = 10


def audio_changes(writer: Writer, vectors: np.ndarray) -> Changes:
    """One asset per `PER_ASSET` of `vectors` (100 s files cut in 10 s windows), ids allocated
    from `writer`."""
    changes = Changes()
    ids = writer.allocate_items(len(vectors))
    for first in range(0, len(ids), PER_ASSET):
        asset = writer.allocate_asset()
        changes.new_assets.append(
            {"asset_id": asset, "path": f"/media/{asset}.wav", "content_hash": f"{asset:032x}",
             "kind": "audio", "bytes": 1, "mtime": 0.0, "duration": 100.0, "labels": []}
        )  # fmt: skip
        for k, item in enumerate(ids[first : first + PER_ASSET]):
            changes.new_items.append(
                {"item_id": int(item), "asset_id": asset, "modality": "audio",
                 "start": 10.0 * k, "end": 10.0 * (k + 1), "text": None}
            )  # fmt: skip
    changes.add_vectors("audio", ids, vectors)
    return changes
