"""An index as a Python object: create it by ingesting, then search, inspect, check, re-type.

    index = xsearch.open("media", create=True)
    index.ingest(["~/media"])
    index.search(text="rain on a roof", target="audio", k=5)

Every `xsearch` command that touches an index is one call here (the sqlite-utils pattern).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xsearch.errors import ParameterError, UsageError
from xsearch.search.hit import Hit
from xsearch.search.targets import targets_for

if TYPE_CHECKING:
    import numpy as np

    from xsearch.ingest.pipeline import IngestOptions, IngestReport
    from xsearch.media.query_files import QueryFiles
    from xsearch.models.spec import Encoder
    from xsearch.search.hit import Hits
    from xsearch.store.rebuild import ModalityReport
    from xsearch.store.repair import Repair
    from xsearch.store.store import Store
    from xsearch.store.verify import Verdict

__all__ = ["Hit", "Index", "IndexStatus", "IngestOptions", "list_indexes", "open_index"]


@dataclass(frozen=True)
class IndexStatus:
    """What an index holds."""

    index: str
    path: str
    generation: int
    assets: int
    items: dict[str, int]  # per modality of the index's model
    failures: int
    bytes: int  # on disk, all files
    model: dict[str, str] | None  # encoder, config, weights digest ("random" for random)
    targets: list[str]  # what a search may return
    recipe: dict[str, Any] | None  # how items were cut
    failed: list[dict[str, str]] | None = None  # path and reason, when asked for
    notes: list[str] = field(default_factory=list)  # what the model leaves out, in words
    segments: int = 0  # immutable parts of the store (merged by ingest and `index compact`)

    @property
    def random_weights(self) -> bool:
        return (self.model or {}).get("weights") == "random"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.failed is None:
            del out["failed"]
        return out


class Index:
    """A named index and the model that built it (loaded when first needed).

    Reading methods (`search`, `status`, `evaluate`) see one published generation at a time;
    `refresh` moves to the newest. Writing methods (`ingest`, `rebuild`, `repair`) take the
    index's writer lock, publish a new generation atomically and move this object onto it.
    """

    def __init__(
        self,
        directory: Path,
        *,
        weights: str | None = None,
        config: str | None = None,
        device: str = "auto",
        batch_size: int = 16,
        placement: Any = None,
        precision: str = "fp32",
    ) -> None:
        self.dir = directory
        self.weights = weights
        self.config = config
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        self.placement = placement
        self._store: Store | None = None
        self._encoder: Encoder | None = None
        self._model_lock = threading.Lock()  # one model call at a time: search is thread-safe

    @classmethod
    def for_store(cls, store: Store, device: str = "auto") -> Index:
        """An Index reading the generation `store` holds (e.g. an older one, for tests)."""
        index = cls(store.dir, device=device, placement=store.placement)
        index._store = store
        return index

    # --- what it is ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def exists(self) -> bool:
        """Whether a generation has been published."""
        from xsearch.store.manifest import read_manifest

        return self.dir.is_dir() and read_manifest(self.dir) is not None

    @property
    def store(self) -> Store:
        """The published generation this object reads (UsageError when there is none)."""
        if self._store is None:
            from xsearch.store.store import Store

            store = Store.open(self.dir, placement=self.placement)
            if store.manifest is None:
                raise UsageError(f"index {self.name} is empty (add files with ingest)")
            self._store = store
        return self._store

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.store.modalities)

    @property
    def targets(self) -> tuple[str, ...]:
        """What `search` may return from this index."""
        return targets_for(self.modalities)

    @property
    def model_name(self) -> str | None:
        """The model the index was built with (a name from `list_models`), or the one asked
        for when it has none yet."""
        manifest = self.store.manifest if self.exists else None
        recorded = (manifest.model or {}).get("config") if manifest else None
        return recorded or self.config

    @property
    def random_weights(self) -> bool:
        """Whether the index was built with random weights (its rankings mean nothing)."""
        manifest = self.store.manifest
        return manifest is not None and manifest.model.get("weights") == "random"

    def refresh(self) -> bool:
        """Move to the index's newest generation, keeping the loaded model; True if it moved.
        A long-lived reader (the server) calls it so that it follows ingests, whose writers
        delete the files of generations older than the previous one."""
        from xsearch.store.manifest import read_manifest
        from xsearch.store.store import Store

        manifest = read_manifest(self.dir)
        current = self._store.generation if self._store is not None else None
        if manifest is None:
            self._store = None
            return False
        if manifest.generation == current:
            return False
        if self._store is not None and self._store.manifest is not None:
            self._store = self._store.follow(manifest)  # keeps the segments it had read
        else:
            self._store = Store(self.dir, manifest, self.placement)  # same CPU / GPU(s)
        return True

    def status(self, failures: bool = False) -> IndexStatus:
        """Counts per modality, generation, size on disk, model and recipe; with `failures`,
        each file that could not be ingested and why."""
        from xsearch.store.store import Store

        # an index with no generation yet (or not even a folder) reports 0 of everything
        store = Store.open(self.dir) if self.dir.is_dir() else Store(self.dir, None)
        modalities = store.modalities if store.manifest else ()
        failed = store.failures.select(["path", "reason"]).to_pylist() if failures else None
        return IndexStatus(
            index=self.name,
            path=str(self.dir),
            generation=store.generation,
            assets=store.asset_count(),
            items={m: store.count(m) for m in modalities},
            failures=store.failures.num_rows,
            bytes=sum(p.stat().st_size for p in self.dir.rglob("*") if p.is_file())
            if self.dir.is_dir()
            else 0,
            model=dict(store.manifest.model) if store.manifest else None,
            targets=list(targets_for(modalities)) if modalities else [],
            recipe=store.recipe if store.manifest else None,
            failed=failed,
            notes=_left_out(store),
            segments=len(store.manifest.segments) if store.manifest else 0,
        )

    # --- the model -------------------------------------------------------------------------

    @property
    def encoder(self) -> Encoder:
        """The model that embeds queries and new files: the weights given to `open_index`, or
        those found as usual; for an existing index it must be the one that built it."""
        if self._encoder is None:
            from xsearch.models import load_encoder

            recorded = self._recorded_model()
            weights = self.weights
            if weights is None and recorded and recorded.get("weights") == "random":
                weights = "random"
            config = self.config or (recorded or {}).get("config")
            encoder = load_encoder(
                weights,
                config=config,
                device=self.device,
                batch_size=self.batch_size,
                precision=self.precision,
            )
            self._check_model(encoder, recorded)
            self._encoder = encoder
        return self._encoder

    def use_encoder(self, encoder: Encoder) -> None:
        """Embed with `encoder` (already loaded; e.g. a test's fake) instead of loading one."""
        self._check_model(encoder, self._recorded_model())
        self._encoder = encoder

    def _frame_policy(self) -> str:
        """The frames a video stands for in this index (its recipe's; central before any)."""
        from xsearch.store.manifest import read_manifest

        if self._store is not None:
            manifest = self._store.manifest
        else:
            manifest = read_manifest(self.dir) if self.dir.is_dir() else None
        recipe = manifest.recipe if manifest is not None else None
        return (recipe or {}).get("frames") or "central"

    def _recorded_model(self) -> dict[str, str] | None:
        from xsearch.store.manifest import read_manifest

        manifest = read_manifest(self.dir) if self.dir.is_dir() else None
        return dict(manifest.model) if manifest and manifest.model else None

    def _check_model(self, encoder: Encoder, recorded: dict[str, str] | None) -> None:
        from xsearch.ingest.identity import model_identity

        found = model_identity(encoder)
        if recorded and found != recorded:
            raise UsageError(
                f"index {self.name} was built with {_describe(recorded)}, not with "
                f"{_describe(found)} found now: give the weights it was built with"
            )

    # --- writing ---------------------------------------------------------------------------

    def ingest(
        self,
        paths: Iterable[str | os.PathLike[str]],
        options: IngestOptions | None = None,
        *,
        on_plan: Callable[[int], None] | None = None,
        on_file: Callable[[Path, str, int], None] | None = None,
        on_skipped: Callable[[Path, OSError], None] | None = None,
        ray: bool = False,
        ray_address: str | None = None,
        ray_actors: int | None = None,
    ) -> IngestReport:
        """Bring the index up to date with the media files under `paths` (folders or files):
        new and changed files are embedded, renamed ones keep their items, unchanged ones cost
        nothing, bad ones are recorded with their reason. Creates the index on first use.

        Progress: `on_plan(n)` hears how many files need decoding, `on_file(path, status,
        items)` each file's result and the items embedded so far, `on_skipped(path, error)`
        each entry of the folders that could not be read. `ray`/`ray_address`: decode and
        embed on a Ray cluster (`ray_actors` embedding actors)."""
        from xsearch.ingest.pipeline import IngestOptions, ingest
        from xsearch.ingest.scan import find_files
        from xsearch.store.lock import WriterLock
        from xsearch.store.store import LOCK

        options = options or IngestOptions()
        roots = [Path(p).expanduser() for p in paths]
        for root in roots:
            if not root.exists():
                raise UsageError(f"{root}: no such file or folder")
        unsupported: list[str] = []
        found = find_files(
            roots, on_error=on_skipped, on_unsupported=lambda p: unsupported.append(str(p))
        )
        files = list(found)
        if not files and not options.prune and not self.exists:
            where = ", ".join(str(r) for r in roots) or "the paths given"
            raise UsageError(f"no media files found under {where}; nothing to index")
        backend = self._ray_backend(ray, ray_address, ray_actors)
        WriterLock(self.dir / LOCK).check()  # a locked index fails now, not after the model loads
        encoder = self.encoder
        with backend or nullcontext():
            report = ingest(files, self.dir, encoder, options, on_plan, on_file, backend)
        report.unsupported = unsupported
        self.refresh()
        return report

    def _ray_backend(self, ray: bool, address: str | None, actors: int | None):
        if not (ray or address):
            if actors is not None:
                raise ParameterError("ray_actors", "applies to an ingest on Ray only")
            return None
        from xsearch.ingest.ray_backend import RayBackend, import_ray, starts_local

        import_ray(starts_local(address))  # before anything slow: is it installed?
        backend = RayBackend(address, actors=actors, device=self.device)
        if self._encoder is None:
            self.device = "cpu"  # this process only plans and commits; the actors embed
        return backend

    def rebuild(
        self,
        factory: str = "Flat",
        *,
        on_disk: bool = False,
        train_sample: int | None = None,
        batch_size: int = 32_768,
    ) -> list[ModalityReport]:
        """Re-type the FAISS indexes (e.g. "IVF4096,PQ64,RFlat", "HNSW32") from the stored
        embeddings, without re-embedding; streamed, so memory holds one batch of `batch_size`
        vectors and the training sample. `on_disk`: IVF lists stay in a mapped file."""
        from xsearch.store.rebuild import RebuildOptions, rebuild

        options = RebuildOptions(
            factory=factory, train_sample=train_sample, batch_size=batch_size, on_disk=on_disk
        )
        _, reports = rebuild(self.dir, options)
        self.refresh()
        return reports

    def compact(self, full: bool = False) -> list[int]:
        """Merge segments as the merge policy says (ingest does this after its commits), or
        all into one with `full`; each merge is a commit of its own that readers never wait
        for. Returns the generations published."""
        from xsearch.store.manifest import FORMAT
        from xsearch.store.store import Writer, full_merge

        with Writer(self.dir, self._model_of_index()) as writer:
            upgraded = []  # an older format's segment is counted first (its tables read)
            if writer.store.manifest is not None and writer.store.manifest.format != FORMAT:
                upgraded.append(writer.upgrade())
            published = upgraded + writer.compact(full_merge() if full else None)
        self.refresh()
        return [store.generation for store in published]

    def upgrade(self) -> bool:
        """Record an index written in an older store format in the current one (no data is
        rewritten); False when it already is."""
        from xsearch.store.manifest import FORMAT
        from xsearch.store.store import Writer

        with Writer(self.dir, self._model_of_index()) as writer:
            if writer.store.manifest is None or writer.store.manifest.format == FORMAT:
                return False
            writer.upgrade()
        self.refresh()
        return True

    def _model_of_index(self) -> dict[str, str]:
        from xsearch.store.manifest import read_manifest

        if not self.dir.is_dir() or (manifest := read_manifest(self.dir)) is None:
            raise UsageError(f"no index at {self.dir} (create one with `xsearch ingest`)")
        return manifest.model

    def verify(self) -> Verdict:
        """Check every file of the published generation against the manifest (size, sha256,
        content, agreement between tables and indexes). Reads only."""
        from xsearch.store.verify import verify_index

        return verify_index(self.dir)

    def repair(self) -> Repair:
        """Rebuild what can be rebuilt from the stored embeddings, restore a damaged manifest
        from its kept copy, and go back to the previous generation when source data is lost;
        the result says what was done and what is lost."""
        from xsearch.store.repair import repair_index

        report = repair_index(self.dir)
        self._store = None
        return report

    # --- reading ---------------------------------------------------------------------------

    def embed_queries(
        self,
        text: Sequence[str] = (),
        image: Sequence[str | Path] = (),
        audio: Sequence[str | Path] = (),
        video: Sequence[str | Path] = (),
        *,
        decoded: QueryFiles | None = None,
    ) -> np.ndarray:
        """One unit vector per query, in the order text, image, audio, video (a video's vector
        fuses its frames, as the index's frame policy picks them, and its sound, if it has
        one: the frames' mean direction and the sound weigh alike). Files are decoded before
        the model is loaded, as the model takes them; `decoded` keeps them for other calls
        (the searches of several indexes decode each file once per model input)."""
        import numpy as np

        from xsearch.media.query_files import QueryFiles
        from xsearch.models.encoder import normalize_parts
        from xsearch.models.spec import EncoderSpec

        files = decoded if decoded is not None else QueryFiles()
        spec: EncoderSpec = self.spec

        def mean_row(rows: np.ndarray) -> np.ndarray:
            """The rows' mean direction (per space, for a model of several)."""
            return normalize_parts(rows.sum(axis=0, keepdims=True), spec.spaces)[0]

        for modality, given in (("text", text), ("image", image), ("audio", audio)):
            if given:
                spec.require(modality)
        if video and not (spec.image or spec.audio):
            spec.require("image")
        images = [files.image(p) for p in image] if spec.image else []
        policy = self._frame_policy()
        per_video: list[list[Any]] = []  # pictures, or clips for a model of video clips
        if spec.image and spec.image.clip_seconds:
            per_video = [files.clips(v, policy, spec.image) for v in video]
        elif spec.image:
            per_video = [files.frames(v, policy) for v in video]
        frames = [picture for pictures in per_video for picture in pictures]
        sounded = [bool(spec.audio) and files.has_audio(v) for v in video]
        sounds, tracks_in = [], []
        if spec.audio:  # (else no audio query came this far, and no video has sound)
            sounds = [files.audio(p, spec.audio) for p in audio]
            tracks_in = [files.audio(v, spec.audio) for v, s in zip(video, sounded) if s]
        if not (text or images or sounds or frames or tracks_in):
            raise UsageError("give a query: text, image, audio, video or an item id")
        none = np.empty((0, spec.dim), dtype=np.float32)
        with self._model_lock:
            enc = self.encoder
            texts = enc.embed("text", list(text)) if text else none
            pictures = enc.embed("image", images + frames) if images or frames else none
            tracks = enc.embed("audio", sounds + tracks_in) if sounds or tracks_in else none
        parts = [texts, pictures[: len(images)], tracks[: len(sounds)]]
        video_tracks = iter(tracks[len(sounds) :])
        start = len(images)
        for number, has_sound in enumerate(sounded):
            both = []
            if per_video:
                count = len(per_video[number])
                both.append(mean_row(pictures[start : start + count]))
                start += count
            both += [next(video_tracks)] if has_sound else []
            if not both:
                raise UsageError(f"{', '.join(map(str, video))}: nothing this model can embed")
            parts.append(mean_row(np.stack(both))[None])
        return np.concatenate([p for p in parts if len(p)])

    @property
    def spec(self):
        """What the index's model embeds and expects (`EncoderSpec`), without loading it."""
        if self._encoder is not None:
            return self._encoder.spec
        from xsearch.models.config import spec_for

        recorded = self._recorded_model() or {}
        return spec_for(self.config or recorded.get("config") or "audioclip")

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
        decoded: QueryFiles | None = None,
        per_file: int | None = None,
        by_file: bool = False,
    ) -> Hits:
        """The `k` best hits of `target` (see `targets`) for the queries, fused into one
        vector. Each query is a value or a (value, weight) pair; `like` takes indexed item
        ids. `where` is SQL over the item and asset columns. Scores are calibrated (see
        xsearch/search/calibrate.py), so `min_score` means the same for every pairing.
        `per_file`: hits of one file at most (its frames, windows, texts); by default one
        frame of each video for `image`, every audio window and text, and for `video` and
        `all` one hit per file, its best moment. `by_file`: a modality's hits as files too:
        the `k` best files by their best item, each followed by its next best up to
        `per_file` (default one), sharing the file's rank.
        `decoded`: query files already decoded, shared with other searches (search_indexes).
        The result is a list that also says the `generation` it was found in."""
        from xsearch.search.engine import SearchOptions
        from xsearch.search.hit import Hits
        from xsearch.search.targets import check_target
        from xsearch.store.manifest import StoreCorrupt

        if k < 1:
            raise ParameterError("k", "must be at least 1")
        if per_file is not None and (isinstance(per_file, bool) or per_file < 1):
            raise ParameterError("per_file", "must be at least 1")
        check_target(target, self.modalities)
        text, image, audio, video = (_weighted(q) for q in (text, image, audio, video))
        liked = _weighted([like] if isinstance(like, int) else like)
        if any(not isinstance(i, int) for i, _ in liked):
            raise ParameterError("like", "give item ids (integers), or (id, weight) pairs")
        files = [q for q, _ in [*image, *audio, *video]]
        if not (text or files or liked):
            raise UsageError("give a query: text, image, audio, video or an item id")
        if where is not None:
            self.check_where(where)
        embedded = None
        if text or files:
            embedded = self.embed_queries(
                *([q for q, _ in qs] for qs in (text, image, audio, video)), decoded=decoded
            )
        weights = [w for _, w in [*text, *image, *audio, *video, *liked]]
        request = (embedded, weights, files, [i for i, _ in liked])
        options = SearchOptions(
            None, frozenset(), min_score, nprobe, ef, k_factor, per_file, bool(by_file)
        )
        store = self.store  # one generation for the whole search, even if refreshed meanwhile
        try:
            hits = self._search_in(store, request, target, k, where, exclude_self, options)
        except StoreCorrupt:
            # A reader's files go once a generation two newer is published: follow and retry.
            if not self.refresh():
                raise
            store = self.store
            hits = self._search_in(store, request, target, k, where, exclude_self, options)
        return Hits(hits, store.generation)

    def check_where(self, where: str) -> None:
        """ParameterError for a `where` filter that does not parse or names unknown columns,
        planned, not run: a bad filter fails before any model or upload work."""
        from xsearch.search.engine import check_where

        check_where(self.store, where)

    def _search_in(self, store, request, target, k, where, exclude_self, options) -> list[Hit]:
        import numpy as np

        from xsearch.search.engine import search, searched_modalities
        from xsearch.search.spaces import queries_for

        embedded, weights, files, liked = request
        vectors = [v for v in (embedded, store.vectors(liked) if liked else None) if v is not None]
        excluded: frozenset[int] = frozenset()
        if exclude_self:
            excluded = _assets_of(store, files) | _assets_of_items(store, liked)
        options = replace(options, where=where, exclude_assets=excluded)
        searched = searched_modalities(target)
        query = queries_for(self.spec, np.concatenate(vectors), weights, searched)
        return search(store, query, target, k, options)

    def evaluate(self, **options: Any):
        """Retrieval quality (P@1, R@1, mAP, ...) of every pairing of the index's modalities
        over its labelled items; see `xsearch.api.evaluate` for the options."""
        from xsearch.api.evaluation import evaluate

        return evaluate(self, **options)


def _describe(model: dict[str, str]) -> str:
    """'audioclip-tiny, random weights' or 'audioclip, weights sha256 2441d35b…'."""
    weights = model.get("weights", "?")
    named = "random weights" if weights == "random" else f"weights sha256 {weights[:12]}…"
    return f"{model.get('config', '?')}, {named}"


def _assets_of(store: Store, files: Sequence[str | Path]) -> frozenset[int]:
    """Assets with the same content as the query files."""
    from xsearch.ingest.identity import content_hash

    if not files:
        return frozenset()
    hashes = {content_hash(Path(f)) for f in files}
    assets = store.assets.to_pylist()
    return frozenset(a["asset_id"] for a in assets if a["content_hash"] in hashes)


def _assets_of_items(store: Store, item_ids: list[int]) -> frozenset[int]:
    import pyarrow as pa
    import pyarrow.compute as pc

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


def _left_out(store: Store) -> list[str]:
    """What the index's model does not embed of the files it holds: the pictures of videos
    for a model without images (their sound is embedded), in one line."""
    from xsearch.models.registry import model_names, spec_for

    config = (store.manifest.model or {}).get("config") if store.manifest else None
    if config not in model_names():
        return []
    spec = spec_for(config)
    if spec.image is not None:
        return []
    videos = store.assets.column("kind").to_pylist().count("video")
    if not videos:
        return []
    plural = "s" if videos != 1 else ""
    return [
        f"{videos} video{plural}: sound only, frames skipped "
        f"(model {config} embeds {', '.join(spec.modalities)})"
    ]


def open_index(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    create: bool = False,
    weights: str | None = None,
    config: str | None = None,
    device: str = "auto",
    batch_size: int = 16,
    gpu: bool = False,
    fp16_index: bool = False,
    precision: str = "fp32",
    model: str | None = None,
) -> Index:
    """The index called `name` under `root` (default: $XSEARCH_HOME, else ./indexes).

    An index that does not exist is an error unless `create` (it is then made by the first
    `ingest`). `weights` (a checkpoint path or "random"; default: $XSEARCH_WEIGHTS, then the
    cache) and `model` (a name from `list_models`; `config` is its older spelling) choose the
    model for new indexes; an existing index uses the model it records and checks that any
    given are the ones it was built with. `device` is where the model runs. `gpu`: search the FAISS
    indexes on the GPU(s) with faiss-gpu (sharded over several), `fp16_index` storing their
    vectors as float16. `precision`: the model's arithmetic, "fp32" (exact, the default),
    "bf16" or "int8" (CPU only; see xsearch/models/precision.py)."""
    from xsearch.api.models import model_option
    from xsearch.indexes.placement import Placement
    from xsearch.models.precision import check_precision
    from xsearch.models.registry import model_card
    from xsearch.store.store import index_dir

    config = model_option(model, config)
    if config is not None:
        model_card(config)  # an unknown name fails now, in one line
    check_precision(precision, "cuda" if device.startswith("cuda") else "cpu")

    directory = index_dir(name, Path(root) if root else None)
    check_placement(gpu, fp16_index)  # before any work: one line when there is no GPU to use
    placement = Placement(gpu, fp16_index)
    if not create and not directory.is_dir():
        raise UsageError(f"no index at {directory} (create one with ingest)")
    return Index(
        directory,
        weights=weights,
        config=config,
        device=device,
        batch_size=batch_size,
        placement=placement,
        precision=precision,
    )


def check_placement(gpu: bool, fp16_index: bool) -> None:
    """UsageError now, in one line, when GPU search cannot apply (no faiss-gpu or no CUDA
    GPU; float16 storage without the GPU), before any slow work."""
    from xsearch.indexes.placement import Placement, require_gpu

    Placement(gpu=gpu, float16=fp16_index)
    if gpu:
        require_gpu()


def list_indexes(root: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the indexes under `root` (default: $XSEARCH_HOME, else ./indexes)."""
    from xsearch.store.manifest import MANIFEST
    from xsearch.store.store import index_root

    folder = Path(root) if root else index_root()
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / MANIFEST).is_file())


def __getattr__(name: str) -> Any:
    """The ingest layer's option and report types, loaded when first asked for."""
    if name in ("IngestOptions", "IngestReport"):
        from xsearch.ingest import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
