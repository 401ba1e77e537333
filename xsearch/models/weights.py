"""Where a model's weights come from: `--weights`, then `XSEARCH_WEIGHTS`, then the cache.

`--weights random` is the explicit opt-in for exercising the pipeline without trained weights.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from xsearch.errors import WeightsNotFound
from xsearch.models.registry import DEFAULT_MODEL, Release, family_of, model_card

RANDOM = "random"
ENV_WEIGHTS = "XSEARCH_WEIGHTS"
ENV_CACHE = "XSEARCH_CACHE"


# The official AudioCLIP checkpoints (the v0.1 release), by name: full, partial.
RELEASES: dict[str, Release] = {r.name: r for r in model_card(DEFAULT_MODEL).releases}


def cache_dir() -> Path:
    """`XSEARCH_CACHE`, else `$XDG_CACHE_HOME/xsearch`, else `~/.cache/xsearch`."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "xsearch"


def weights_dir(model: str = DEFAULT_MODEL) -> Path:
    """Where `xsearch model fetch` puts a model's files: AudioCLIP's checkpoints directly in
    `<cache>/weights` (where they have always been), every other model's checkpoint and
    tokenizer files in `<cache>/weights/<model>`."""
    base = cache_dir() / "weights"
    return base if model == DEFAULT_MODEL else base / model


@dataclass(frozen=True)
class WeightsChoice:
    """What a command will load: a checkpoint path, or random weights."""

    path: Path | None  # None means random weights
    source: str  # "weights" (given by the caller), "XSEARCH_WEIGHTS", "cache" or "random"

    @property
    def is_random(self) -> bool:
        return self.path is None

    @classmethod
    def given(cls, checkpoint: str | os.PathLike[str] | None) -> WeightsChoice:
        """The caller's checkpoint (None: random weights); WeightsNotFound, in one line, for a
        path that is no file."""
        if checkpoint is None:
            return cls(None, "random")
        path = Path(checkpoint)
        if not path.is_file():
            raise WeightsNotFound(f"{path}: no such checkpoint file")
        return cls(path, "weights")


def install_hint(model: str = DEFAULT_MODEL) -> str:
    """How to get the official weights, in words every caller can use (the one place it is
    written: the missing-weights error and the random-weights banner both show it)."""
    card = model_card(model)
    if not card.releases:
        return f"model {model} has no published weights: pick another model"
    files = [card.releases[0].filename, *(t.filename for t in card.tokenizer)]
    fetch = "xsearch model fetch" + ("" if model == DEFAULT_MODEL else f" {model}")
    if card.releases[0].installed != card.releases[0].filename:  # a pickled release
        return (
            f"run `{fetch}`, or `xsearch model convert {model} {files[0]}` on the file from "
            f"{card.releases[0].url}, or pass weights (a converted checkpoint path)"
        )
    return (
        f"run `{fetch}`, or put {' and '.join(files)} in {weights_dir(model)}, "
        f"or set {ENV_WEIGHTS} or pass weights (a checkpoint path)"
    )


def missing_weights_message(model: str = DEFAULT_MODEL) -> str:
    """The error when no weights are given or found: where to get them, and the random opt-in."""
    return (
        f"no {model} weights found: {install_hint(model)}; "
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


def resolve_weights(option: str | None = None, model: str | None = None) -> WeightsChoice:
    """The weights a command uses for `model` (default AudioCLIP); raises WeightsNotFound
    with where to put them. The cache is searched for that model's published files."""
    if option == RANDOM:
        return WeightsChoice(None, RANDOM)
    # XSEARCH_WEIGHTS names AudioCLIP's checkpoint: a model of another family is found by
    # its own files, so one environment serves indexes of several models.
    env = os.environ.get(ENV_WEIGHTS) if model is None or family_of(model) == "audioclip" else None
    for value, source in ((option, "weights"), (env, ENV_WEIGHTS)):
        if value:
            if value == RANDOM:
                return WeightsChoice(None, RANDOM)
            path = Path(value).expanduser()
            if not path.is_file():
                named = f"weights {path}" if source == "weights" else f"{source}={path}"
                raise WeightsNotFound(f"{named} is not a file")
            return WeightsChoice(path, source)
    model = model or DEFAULT_MODEL
    for release in model_card(model).releases:
        path = weights_dir(model) / release.installed
        if path.is_file():
            return WeightsChoice(path, "cache")
    raise WeightsNotFound(missing_weights_message(model))
