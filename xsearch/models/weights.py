"""Where the AudioCLIP weights come from: `--weights`, then `XSEARCH_WEIGHTS`, then the cache.

`--weights random` is the explicit opt-in for exercising the pipeline without trained weights.
"""

from __future__ import annotations

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
    source: str  # "--weights", "XSEARCH_WEIGHTS", "cache" or "random"

    @property
    def is_random(self) -> bool:
        return self.path is None


def missing_weights_message() -> str:
    return (
        "no AudioCLIP weights found: run `xsearch model fetch`, or put "
        f"{RELEASES['full'].filename} in {weights_dir()}, or pass --weights PATH "
        f"(or set {ENV_WEIGHTS}); `--weights random` runs with meaningless random weights"
    )


def resolve_weights(option: str | None = None) -> WeightsChoice:
    """The weights a command uses; raises WeightsNotFound with where to put them."""
    if option == RANDOM:
        return WeightsChoice(None, RANDOM)
    for value, source in ((option, "--weights"), (os.environ.get(ENV_WEIGHTS), ENV_WEIGHTS)):
        if value:
            if value == RANDOM:
                return WeightsChoice(None, RANDOM)
            path = Path(value).expanduser()
            if not path.is_file():
                raise WeightsNotFound(f"{source} points at {path}, which is not a file")
            return WeightsChoice(path, source)
    for release in RELEASES.values():
        path = weights_dir() / release.filename
        if path.is_file():
            return WeightsChoice(path, "cache")
    raise WeightsNotFound(missing_weights_message())
