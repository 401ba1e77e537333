"""The manifest: the one file that says which files make up the current generation.

Publishing a generation is one atomic replace of `manifest.json`; every other file of the
store is immutable once written and named after the generation that wrote it. The manifest
carries a checksum of its own content, and once published a copy of it is kept beside the data
files (`data/manifest-gN.json`, deleted with the rest of the generation's files), from which
`xsearch verify --repair` restores a lost or damaged manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from xsearch.errors import XSearchError
from xsearch.store.fsutil import crashpoint, fsync_dir, sha256_file
from xsearch.store.names import manifest_copy, manifest_copy_generation

MANIFEST = "manifest.json"
FORMAT = 2  # 2: the data in segments (below); 1: one set of files rewritten by every commit
READABLE = (1, 2)


class StoreCorrupt(XSearchError):
    """A store file is missing, truncated or does not match its recorded checksum."""


def repair_hint(index_dir: Path) -> str:
    """What to do about a damaged store file."""
    return f"run `xsearch verify --repair --index {index_dir.name}`"


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the index directory
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Segment:
    """One immutable segment: the rows one commit (or one merge) wrote. Its files are the
    manifest's roles under `seg/<id>/` (store/segments.py); the counts let search and the merge
    policy size it without reading a file."""

    id: int  # the generation that wrote it: unique, and files name it
    rows: int = 0  # item rows in its files, deleted ones included
    live: dict[str, int] = field(default_factory=dict)  # modality -> items not deleted
    assets: int = 0  # asset rows not deleted

    @property
    def live_items(self) -> int:
        return sum(self.live.values())

    @property
    def deleted(self) -> int:
        return self.rows - self.live_items


@dataclass(frozen=True)
class Manifest:
    generation: int
    model: dict[str, str]  # encoder name, config, weights digest: queries must use the same
    files: dict[str, FileEntry] = field(default_factory=dict)  # role -> file
    next_item_id: int = 0
    next_asset_id: int = 0
    format: int = FORMAT
    # modality -> vector width; its keys are the index's modalities. Empty in manifests written
    # before widths were recorded (store/binding.py infers them from the stored vectors).
    widths: dict[str, int] = field(default_factory=dict)
    recipe: dict | None = None  # how ingest cut items (window length, frames); None: not told
    segments: tuple[Segment, ...] = ()  # in order: older rows first (ties rank in this order)

    def to_json(self) -> bytes:
        body = asdict(self)
        return _dump({**body, "sha256": _digest(body)})

    @classmethod
    def from_json(cls, data: bytes, where: Path) -> Manifest:
        """Parse and check a manifest; StoreCorrupt (one line, naming `where`) when it is
        damaged. Manifests written before it carried its checksum are taken as they are."""
        is_copy = manifest_copy_generation(where.name) is not None
        index_dir = where.parent.parent if is_copy else where.parent
        try:
            raw = json.loads(data)
            claimed = raw.pop("sha256", None)
            if claimed is not None and claimed != _digest(raw):
                raise StoreCorrupt(
                    f"{where}: the manifest is damaged (checksum mismatch); "
                    + repair_hint(index_dir)
                )
            files = {role: FileEntry(**entry) for role, entry in raw.pop("files").items()}
            segments = tuple(Segment(**entry) for entry in raw.pop("segments", ()))
            if raw.get("format") == 1:
                files, segments = _as_one_segment(files, raw["generation"])
            manifest = cls(files=files, segments=segments, **raw)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise StoreCorrupt(
                f"{where}: the manifest is unreadable ({type(e).__name__}); "
                + repair_hint(index_dir)
            ) from None
        if manifest.format not in READABLE:
            raise StoreCorrupt(
                f"{where}: store format {manifest.format}, this xsearch reads formats "
                f"{READABLE[0]} to {READABLE[-1]}"
            )
        return manifest

    def segment(self, segment_id: int) -> Segment | None:
        return next((s for s in self.segments if s.id == segment_id), None)


# Files of a format-1 generation that belong to its data (the rest are global)
_SEGMENT_ROLES = ("assets", "items", "embeddings/", "faiss/", "ivfdata/")


def _as_one_segment(files: dict[str, FileEntry], generation: int):
    """A format-1 generation read as one segment of the same files (nothing is rewritten:
    the first commit publishes format 2 naming them). Its counts are unknown until its
    tables are read: left 0, which readers take as "count from the files"."""
    from xsearch.store.segments import segment_role

    moved = {
        segment_role(generation, role) if role.startswith(_SEGMENT_ROLES) else role: entry
        for role, entry in files.items()
    }
    has_data = any(role.startswith("seg/") for role in moved)
    return moved, ((Segment(generation, rows=-1),) if has_data else ())


def file_problem(path: Path, entry: FileEntry) -> str | None:
    """What is wrong with the data file `path` against its manifest entry, or None."""
    try:
        if not path.is_file():
            return "missing" if not path.exists() else "not a regular file"
        size = path.stat().st_size
        if size != entry.bytes:
            return f"size mismatch ({size} bytes, {entry.bytes} recorded)"
        if sha256_file(path) != entry.sha256:
            return "checksum mismatch"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    return None


def _dump(body: dict) -> bytes:
    return json.dumps(body, indent=1, sort_keys=True).encode()


def _digest(body: dict) -> str:
    return hashlib.sha256(_dump(body)).hexdigest()


def manifest_copies(index_dir: Path) -> dict[int, Path]:
    """The kept copies of published manifests, by generation (see `publish`)."""
    data = index_dir / "data"
    paths = data.iterdir() if data.is_dir() else ()
    found = ((manifest_copy_generation(p.name), p) for p in paths)
    return {gen: path for gen, path in found if gen is not None}


def kept_manifest(index_dir: Path, generation: int) -> Manifest | None:
    """The kept copy of generation `generation`'s manifest, or None when it is not there or
    not sound."""
    path = index_dir / "data" / manifest_copy(generation)
    try:
        return Manifest.from_json(path.read_bytes(), path)
    except (OSError, StoreCorrupt):
        return None


def read_manifest(index_dir: Path) -> Manifest | None:
    """The published manifest, or None for an index with no generation yet. A missing
    manifest beside the kept copy of a published one is damage, not an empty index."""
    path = index_dir / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        copies = manifest_copies(index_dir)
        if copies:
            raise StoreCorrupt(
                f"{path}: missing, though generation {max(copies)} was published; "
                + repair_hint(index_dir)
            ) from None
        return None
    except OSError as e:
        raise StoreCorrupt(
            f"{path}: cannot be read ({e.strerror}); " + repair_hint(index_dir)
        ) from None
    return Manifest.from_json(data, path)


def publish(index_dir: Path, manifest: Manifest) -> None:
    """Replace the manifest atomically: readers see the old or the new one, never a mix, and
    a crash at any step leaves one of the two complete (write aside, fsync, rename, fsync)."""
    path = index_dir / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(manifest.to_json())
        f.flush()
        os.fsync(f.fileno())
    crashpoint("manifest-written")
    os.replace(tmp, path)
    crashpoint("manifest-renamed")
    fsync_dir(index_dir)
    _keep_copy(index_dir, manifest)


def _keep_copy(index_dir: Path, manifest: Manifest) -> None:
    """Keep a copy of the published manifest among the data files, named after its
    generation, so that writers delete it with the rest of that generation. Written after the
    publish: a copy exists only for a generation that was published."""
    data = index_dir / "data"
    copy = data / manifest_copy(manifest.generation)
    try:
        with open(copy, "wb") as f:
            f.write(manifest.to_json())
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(data)
    except OSError:  # a full disk, say: the generation is published, only without a copy
        copy.unlink(missing_ok=True)
