"""Where the AudioCLIP weights come from: `--weights`, then `XSEARCH_WEIGHTS`, then the cache.

`--weights random` is the explicit opt-in for exercising the pipeline without trained weights.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from xsearch.errors import WeightsNotFound

RANDOM = "random"
ENV_WEIGHTS = "XSEARCH_WEIGHTS"
ENV_CACHE = "XSEARCH_CACHE"


@dataclass(frozen=True)
class Release:
    """One official checkpoint, as published with the AudioCLIP v0.1 release."""

    variant: str
    filename: str
    size: int  # bytes
    sha256: str  # of the file in the official repository's assets (Git LFS object id)

    @property
    def url(self) -> str:
        base = "https://github.com/AndreyGuzhov/AudioCLIP/releases/download/v0.1"
        return f"{base}/{self.filename}"


RELEASES = {
    "full": Release(
        "full",
        "AudioCLIP-Full-Training.pt",
        537_302_068,
        "2441d35b353352c8b1bbfb8f7c687f46314c3d2909e940eaf763b8c17f632c44",
    ),
    "partial": Release(
        "partial",
        "AudioCLIP-Partial-Training.pt",
        537_302_068,
        "1921885b6c3b5de0619f2ef4a9700ecbade758a398b34eb064230c30baef0c75",
    ),
}


def cache_dir() -> Path:
    """`XSEARCH_CACHE`, else `$XDG_CACHE_HOME/xsearch`, else `~/.cache/xsearch`."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "xsearch"


def weights_dir() -> Path:
    return cache_dir() / "weights"


@dataclass(frozen=True)
class WeightsChoice:
    """What a command will load: a checkpoint path, or random weights."""

    path: Path | None  # None means random weights
    source: str  # "weights" (given by the caller), "XSEARCH_WEIGHTS", "cache" or "random"

    @property
    def is_random(self) -> bool:
        return self.path is None


def install_hint() -> str:
    """How to get the official weights, in words every caller can use (the one place it is
    written: the missing-weights error and the random-weights banner both show it)."""
    return (
        f"run `xsearch model fetch`, or put {RELEASES['full'].filename} in {weights_dir()}, "
        f"or set {ENV_WEIGHTS} or pass weights (a checkpoint path)"
    )


def missing_weights_message() -> str:
    """The error when no weights are given or found: where to get them, and the random opt-in."""
    return (
        f"no AudioCLIP weights found: {install_hint()}; "
        f"weights {RANDOM!r} runs with meaningless random weights"
    )


def sidecar_path(path: Path) -> Path:
    """Where a checkpoint's sha256 is recorded: `<file>.sha256`, in `sha256sum -c` format."""
    return path.with_name(path.name + ".sha256")


def recorded_sha256(path: Path | None) -> str | None:
    """The sha256 recorded beside a checkpoint (by `xsearch model fetch`), or None: hashing
    half a gigabyte on every start is what the sidecar saves."""
    if path is None:
        return None
    sidecar = sidecar_path(Path(path))
    if not sidecar.is_file():
        return None
    fields = sidecar.read_text(encoding="utf-8", errors="replace").split()
    return fields[0] if fields else None


def weights_sha256(path: Path) -> str:
    """The checkpoint's sha256: recorded beside it, remembered for this version of the file,
    or computed (see `digests.py`)."""
    from xsearch.models.digests import checkpoint_sha256

    return checkpoint_sha256(Path(path))


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks (checkpoints are half a gigabyte)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_weights(option: str | None = None) -> WeightsChoice:
    """The weights a command uses; raises WeightsNotFound with where to put them."""
    if option == RANDOM:
        return WeightsChoice(None, RANDOM)
    for value, source in ((option, "weights"), (os.environ.get(ENV_WEIGHTS), ENV_WEIGHTS)):
        if value:
            if value == RANDOM:
                return WeightsChoice(None, RANDOM)
            path = Path(value).expanduser()
            if not path.is_file():
                named = f"weights {path}" if source == "weights" else f"{source}={path}"
                raise WeightsNotFound(f"{named} is not a file")
            return WeightsChoice(path, source)
    for release in RELEASES.values():
        path = weights_dir() / release.filename
        if path.is_file():
            return WeightsChoice(path, "cache")
    raise WeightsNotFound(missing_weights_message())
