"""Towers built the first time a modality is embedded, and loadable ahead in a thread.

A command that embeds only text never pays for the audio tower; an ingest starts loading the
towers it will need while its decode workers start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import numpy as np


class LazyTowers:
    """Mixin for an encoder: `_load(modality)` builds the function that embeds one batch of
    that modality; `_tower(modality)` builds it once, whichever thread asks first."""

    spec: object  # the encoder's EncoderSpec (its `modalities`)

    def _init_towers(self) -> None:
        self._towers: dict[str, Callable[[list], np.ndarray]] = {}
        self._loading = threading.Lock()

    def loaded(self) -> tuple[str, ...]:
        """The modalities whose towers are loaded (for tests and timing)."""
        return tuple(self._towers)

    def preload(self, modalities: Iterable[str]) -> threading.Thread:
        """Load the towers of `modalities` in a background thread (an ingest starts decoding
        meanwhile); embedding waits for a tower still loading."""
        wanted = [m for m in modalities if m in self.spec.modalities]  # type: ignore[attr-defined]
        thread = threading.Thread(
            target=lambda: [self._tower(m) for m in wanted], name="load-towers", daemon=True
        )
        thread.start()
        return thread

    def _tower(self, modality: str) -> Callable[[list], np.ndarray]:
        step = self._towers.get(modality)
        if step is None:
            with self._loading:
                step = self._towers.get(modality)
                if step is None:
                    step = self._towers[modality] = self._load(modality)
        return step

    def _load(self, modality: str) -> Callable[[list], np.ndarray]:
        raise NotImplementedError
