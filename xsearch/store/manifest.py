"""The manifest: the one file that says which files make up the current generation.

Publishing a generation is one atomic replace of `manifest.json`; every other file of the
store is immutable once written and named after the generation that wrote it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from xsearch.errors import XSearchError
from xsearch.store.fsutil import crashpoint, fsync_dir

MANIFEST = "manifest.json"
FORMAT = 1


class StoreCorrupt(XSearchError):
    """A store file is missing, truncated or does not match its recorded checksum."""


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the index directory
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    generation: int
    model: dict[str, str]  # encoder name, config, weights digest: queries must use the same
    files: dict[str, FileEntry] = field(default_factory=dict)  # role -> file
    next_item_id: int = 0
    next_asset_id: int = 0
    format: int = FORMAT

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, where: Path) -> Manifest:
        try:
            raw = json.loads(data)
            files = {role: FileEntry(**entry) for role, entry in raw.pop("files").items()}
            manifest = cls(files=files, **raw)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise StoreCorrupt(
                f"{where}: the manifest is unreadable ({type(e).__name__}); "
                "restore it from a backup or rebuild the index"
            ) from None
        if manifest.format != FORMAT:
            raise StoreCorrupt(f"{where}: store format {manifest.format}, expected {FORMAT}")
        return manifest


def read_manifest(index_dir: Path) -> Manifest | None:
    """The published manifest, or None for an index with no generation yet."""
    path = index_dir / MANIFEST
    if not path.exists():
        return None
    return Manifest.from_json(path.read_bytes(), path)


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
