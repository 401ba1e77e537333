"""The Python API: `xsearch.open(name)` and an index object to search from a notebook."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xsearch.errors import UsageError
from xsearch.search.engine import Hit, SearchOptions, fuse, search
from xsearch.store.manifest import StoreCorrupt
from xsearch.store.store import Store, index_dir


class Index:
    """One published generation of an index, with the model that built it (loaded on first
    search)."""

    def __init__(self, store: Store, device: str = "auto") -> None:
        if store.manifest is None:
            raise UsageError(f"index {store.dir.name} is empty")
        self.store = store
        self.device = device
        self._model_lock = threading.Lock()  # one model call at a time: search is thread-safe

    @property
    def name(self) -> str:
        return self.store.dir.name

    def refresh(self) -> bool:
        """Move to the index's newest generation, keeping the loaded model; True if it moved.
        A long-lived reader (the server) calls it so that it follows ingests, whose writers
        delete the files of generations older than the previous one."""
        from xsearch.store.manifest import read_manifest

        manifest = read_manifest(self.store.dir)
        if manifest is None or manifest.generation == self.store.generation:
            return False
        self.store = Store(self.store.dir, manifest, self.store.placement)  # same CPU / GPU(s)
        return True

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
        """One unit vector per query, in the order text, image, audio, video (a video's vector
        fuses its central frame and, if it has one, its sound)."""
        from xsearch.media import load_audio, load_image
        from xsearch.media.probe import has_audio

        images = [load_image(p) for p in [*image, *video]]  # decode all before model work
        sounded = [has_audio(v) for v in video]
        sounds = [load_audio(p) for p in [*audio, *(v for v, s in zip(video, sounded) if s)]]
        if not (text or images or sounds):
            raise UsageError("give a query: text, image, audio, video or an item id")
        with self._model_lock:
            enc = self.encoder
            texts = enc.embed_text(list(text)) if text else None
            pictures = enc.embed_images(images) if images else None
            tracks = enc.embed_audio(sounds) if sounds else None
        parts = [texts, pictures[: len(image)] if image else None]
        parts.append(tracks[: len(audio)] if audio else None)
        video_tracks = iter(tracks[len(audio) :] if tracks is not None else [])
        for frame, has_sound in zip(pictures[len(image) :] if video else [], sounded):
            both = np.stack([frame, next(video_tracks)]) if has_sound else frame[None]
            parts.append(fuse(both)[None])
        return np.concatenate([p for p in parts if p is not None and len(p)])

    def search(
        self,
        text: Query = (),
        image: Query = (),
        audio: Query = (),
        video: Query = (),
        like: int | Sequence[int | tuple[int, float]] = (),
        target: str = "audio",
        k: int = 10,
        where: str | None = None,
        exclude_self: bool = False,
        min_score: float | None = None,
        nprobe: int | None = None,
        ef: int | None = None,
        k_factor: float | None = None,
    ) -> list[Hit]:
        """The `k` best hits of `target` (audio, image, text, video or all) for the queries,
        fused into one vector. Each query is a value or a (value, weight) pair; `like` takes
        indexed item ids. Scores are calibrated (see xsearch/search/calibrate.py), so
        `min_score` means the same for every pair of modalities."""
        text, image, audio, video = (_weighted(q) for q in (text, image, audio, video))
        liked = _weighted([like] if isinstance(like, int) else like)
        if any(not isinstance(i, int) for i, _ in liked):
            raise UsageError("like: give item ids (integers), or (id, weight) pairs")
        files = [q for q, _ in [*image, *audio, *video]]
        if not (text or files or liked):
            raise UsageError("give a query: text, image, audio, video or an item id")
        embedded = None
        if text or files:
            embedded = self.embed_queries(
                *([q for q, _ in qs] for qs in (text, image, audio, video))
            )
        weights = [w for _, w in [*text, *image, *audio, *video, *liked]]
        request = (embedded, weights, files, [i for i, _ in liked])
        options = SearchOptions(None, frozenset(), min_score, nprobe, ef, k_factor)
        store = self.store  # one generation for the whole search, even if refreshed meanwhile
        try:
            return self._search_in(store, request, target, k, where, exclude_self, options)
        except StoreCorrupt:
            # A reader's files go once a generation two newer is published: follow and retry.
            if not self.refresh():
                raise
            return self._search_in(self.store, request, target, k, where, exclude_self, options)

    def _search_in(self, store, request, target, k, where, exclude_self, options) -> list[Hit]:
        embedded, weights, files, liked = request
        vectors = [v for v in (embedded, store.vectors(liked) if liked else None) if v is not None]
        excluded = frozenset()
        if exclude_self:
            excluded = self._assets_of(store, files) | self._assets_of_items(store, liked)
        options = replace(options, where=where, exclude_assets=excluded)
        return search(store, fuse(np.concatenate(vectors), weights), target, k, options)

    @staticmethod
    def _assets_of(store: Store, files: Sequence[str | Path]) -> frozenset[int]:
        """Assets with the same content as the query files."""
        from xsearch.ingest.identity import content_hash

        if not files:
            return frozenset()
        hashes = {content_hash(Path(f)) for f in files}
        assets = store.assets.to_pylist()
        return frozenset(a["asset_id"] for a in assets if a["content_hash"] in hashes)

    @staticmethod
    def _assets_of_items(store: Store, item_ids: list[int]) -> frozenset[int]:
        items = store.items
        wanted = pc.is_in(items.column("item_id"), pa.array(item_ids, type=pa.int64()))
        return frozenset(items.filter(wanted).column("asset_id").to_pylist())


Query = str | Path | tuple[str | Path, float] | Sequence[str | Path | tuple[str | Path, float]]


def _weighted(value) -> list[tuple]:
    """A query argument -> [(query, weight), ...]."""
    single = isinstance(value, (str, Path, int)) or (
        isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], (str, Path))
    )
    queries = [value] if single else list(value)
    return [(q[0], float(q[1])) if isinstance(q, tuple) else (q, 1.0) for q in queries]


def open_index(
    name: str,
    root: str | Path | None = None,
    device: str = "auto",
    gpu: bool = False,
    fp16_index: bool = False,
) -> Index:
    """The index called `name` under `root` (default: $XSEARCH_HOME, else ./indexes).
    `gpu`: search its FAISS indexes on the GPU(s) with faiss-gpu (sharded over several), with
    `fp16_index` storing their vectors as float16; `device` is where the model runs."""
    from xsearch.indexes.placement import Placement

    directory = index_dir(name, Path(root) if root else None)
    return Index(Store.open(directory, placement=Placement(gpu, fp16_index)), device)
