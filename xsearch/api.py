"""The Python API: `xsearch.open(name)` and an index object to search from a notebook."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from xsearch.errors import UsageError
from xsearch.search.engine import Hit, SearchOptions, fuse, search
from xsearch.store.store import Store, index_dir


class Index:
    """One published generation of an index, with the model that built it (loaded on first
    search)."""

    def __init__(self, store: Store, device: str = "auto") -> None:
        if store.manifest is None:
            raise UsageError(f"index {store.dir.name} is empty")
        self.store = store
        self.device = device

    @property
    def name(self) -> str:
        return self.store.dir.name

    @cached_property
    def encoder(self):
        """The encoder of the weights the index was built with (refuses other weights)."""
        from xsearch.ingest.identity import model_identity
        from xsearch.models import load_encoder

        recorded = self.store.manifest.model
        weights = "random" if recorded.get("weights") == "random" else None
        encoder = load_encoder(weights, config=recorded.get("config"), device=self.device)
        if model_identity(encoder) != recorded:
            raise UsageError(
                f"index {self.name} was built with other weights than the ones found now "
                "(pass the same --weights / XSEARCH_WEIGHTS used to build it)"
            )
        return encoder

    def embed_queries(
        self,
        text: Sequence[str] = (),
        image: Sequence[str | Path] = (),
        audio: Sequence[str | Path] = (),
        video: Sequence[str | Path] = (),
    ) -> np.ndarray:
        """One vector per query (a video gives its frame and, if it has one, its sound)."""
        from xsearch.media import load_audio, load_image
        from xsearch.media.probe import has_audio

        enc = self.encoder
        parts = []
        if text:
            parts.append(enc.embed_text(list(text)))
        images = [load_image(p) for p in [*image, *video]]
        if images:
            parts.append(enc.embed_images(images))
        sounds = [load_audio(p) for p in [*audio, *(v for v in video if has_audio(v))]]
        if sounds:
            parts.append(enc.embed_audio(sounds))
        if not parts:
            raise UsageError("give a query: text, image, audio or video")
        return np.concatenate(parts)

    def search(
        self,
        text: str | Sequence[str] = (),
        image: str | Path | Sequence[str | Path] = (),
        audio: str | Path | Sequence[str | Path] = (),
        video: str | Path | Sequence[str | Path] = (),
        target: str = "audio",
        k: int = 10,
        where: str | None = None,
        exclude_self: bool = False,
        nprobe: int | None = None,
        ef: int | None = None,
    ) -> list[Hit]:
        """The `k` nearest items of modality `target` to the fused queries."""
        text, image, audio, video = (_as_list(q) for q in (text, image, audio, video))
        vectors = self.embed_queries(text, image, audio, video)
        excluded = self._assets_of([*image, *audio, *video]) if exclude_self else frozenset()
        options = SearchOptions(where=where, exclude_assets=excluded, nprobe=nprobe, ef=ef)
        return search(self.store, fuse(vectors), target, k, options)

    def _assets_of(self, files: Sequence[str | Path]) -> frozenset[int]:
        """Assets with the same content as the query files."""
        from xsearch.ingest.identity import content_hash

        hashes = {content_hash(Path(f)) for f in files}
        assets = self.store.assets.to_pylist()
        return frozenset(a["asset_id"] for a in assets if a["content_hash"] in hashes)


def _as_list(value) -> list:
    if isinstance(value, (str, Path)):
        return [value]
    return list(value)


def open_index(name: str, root: str | Path | None = None, device: str = "auto") -> Index:
    """The index called `name` under `root` (default: $XSEARCH_HOME, else ./indexes)."""
    return Index(Store.open(index_dir(name, Path(root) if root else None)), device)
