"""Each tower's weights, derived once from the checkpoint and kept ready to map.

A command that embeds text needs the text tower only, and should not read, unpickle, check
and fold a 537 MB checkpoint to get it. The first load derives every tower (BatchNorms
folded, convolution weights stored channels-last) and writes one tensor file per tower under
`<cache>/towers/<config>-<source>/`; later loads map the tower they need in microseconds.

The checkpoint stays the source: a derived file is trusted while its device, inode, size and
modification time are those recorded when it was written, else re-hashed against its
recorded sha256, and derived again when missing or damaged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xsearch.models.tensor_files import TensorFileError, map_tensors, write_tensors
from xsearch.models.weights import cache_dir, sha256_file

FORMAT = 1  # bump when what is stored changes meaning (folding, layout): old caches are ignored
TOWERS = ("text", "image", "audio")
# State-dict key prefixes of each tower; the logit scales belong to none (embedding ignores them).
_PREFIXES = {
    "text": ("token_embedding.", "positional_embedding", "transformer.", "ln_final.",
             "text_projection"),
    "image": ("visual.",),
    "audio": ("audio.",),
}  # fmt: skip
NHWC = "nhwc"  # metadata: comma-separated keys of 4-d weights stored channels-last

Arrays = dict[str, np.ndarray]


def tower_of(key: str) -> str | None:
    """The tower a state-dict key belongs to, or None."""
    for tower, prefixes in _PREFIXES.items():
        if key.startswith(prefixes):
            return tower
    return None


@dataclass(frozen=True)
class Tower:
    """One tower's arrays (views of the mapped file) and the keys stored channels-last."""

    arrays: Arrays
    nhwc: frozenset[str]


def towers_root() -> Path:
    return cache_dir() / "towers"


def source_dir(config: str, source: str) -> Path:
    """Where the towers of `config` from `source` (a checkpoint's sha256, or 'random-seedN')
    are kept."""
    return towers_root() / f"{config}-{source}"


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _index(folder: Path) -> dict:
    try:
        index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) and index.get("format") == FORMAT else {}


def read_tower(folder: Path, tower: str) -> Tower | None:
    """The tower kept in `folder`, or None when it is missing, changed or damaged."""
    entry = _index(folder).get("towers", {}).get(tower)
    path = folder / f"{tower}.safetensors"
    if not isinstance(entry, dict) or not path.is_file():
        return None
    if entry.get("stamp") != _stamp(path) and sha256_file(path) != entry.get("sha256"):
        return None
    try:
        arrays, metadata = map_tensors(path)
    except TensorFileError:
        return None
    return Tower(arrays, frozenset(filter(None, metadata.get(NHWC, "").split(","))))


def write_towers(folder: Path, towers: Mapping[str, Tower], about: Mapping[str, str]) -> None:
    """Keep `towers` in `folder`: each file written aside and renamed, then the index that
    vouches for them. Best effort: a cache that cannot be written costs the next run a load."""
    try:
        entries = {}
        for name, tower in towers.items():
            path = folder / f"{name}.safetensors"
            write_tensors(path, tower.arrays, {NHWC: ",".join(sorted(tower.nhwc))})
            entries[name] = {"sha256": sha256_file(path), "stamp": _stamp(path)}
        index = {"format": FORMAT, **about, "towers": entries}
        temp = folder / f".index.json.{os.getpid()}.tmp"
        temp.write_text(json.dumps(index, indent=1), encoding="utf-8")
        os.replace(temp, folder / "index.json")
    except OSError:
        pass


def recorded_config(sha256: str) -> str | None:
    """The config a checkpoint of this digest was found to fit when its towers were derived."""
    root = towers_root()
    if not root.is_dir():
        return None
    for folder in root.glob(f"*-{sha256}"):
        config = _index(folder).get("config")
        if isinstance(config, str) and folder.name == f"{config}-{sha256}":
            return config
    return None


class TowerSource:
    """Where an encoder gets each tower: the cache, else `derive()` (which loads the model,
    with torch) for all towers at once, kept for the next process."""

    def __init__(
        self, config: str, source: str, derive: Callable[[], dict[str, Tower]], keep: bool = True
    ) -> None:
        self.config, self.source = config, source
        self.folder = source_dir(config, source)
        self._derive, self._keep = derive, keep
        self._derived: dict[str, Tower] | None = None

    def tower(self, name: str) -> Tower:
        if self._derived is not None:
            return self._derived[name]
        if self._keep:
            kept = read_tower(self.folder, name)
            if kept is not None:
                return kept
        derived = self._derive()
        if self._keep:
            write_towers(self.folder, derived, {"config": self.config, "source": self.source})
            kept = read_tower(self.folder, name)
            if kept is not None:
                return kept  # mapped: the model it was derived from can be freed
        self._derived = derived  # the cache cannot be written: keep them in memory
        return derived[name]
