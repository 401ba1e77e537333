"""Batches of a model's inputs, and sounds longer than a model's clip embedded as one vector."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from xsearch.models.clap_audio import clip_windows


def batches(items: Iterable, size: int) -> Iterator[list]:
    """`items` in lists of `size` (the last may be shorter)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def embed_in_windows(
    waves: Sequence[np.ndarray],
    clip_samples: int,
    batch_size: int,
    dim: int,
    embed: Callable[[list[np.ndarray]], np.ndarray],
) -> np.ndarray:
    """[n, dim]: for each wave, the normalised mean of the unit vectors of its consecutive
    clip-length windows; `embed(windows)` gives one batch of windows' rows (any norm)."""
    from xsearch.models.encoder import normalize_rows

    sums = np.zeros((len(waves), dim), dtype=np.float32)
    windows = (
        (owner, window)
        for owner, wave in enumerate(waves)
        for window in clip_windows(wave, clip_samples)
    )
    for batch in batches(windows, batch_size):
        owners = [owner for owner, _ in batch]
        np.add.at(sums, owners, normalize_rows(embed([window for _, window in batch])))
    return normalize_rows(sums)
