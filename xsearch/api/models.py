"""Models in the public API: embed inputs, inspect and fetch weights, list configs.

    import xsearch.api as xs
    vectors = xs.embed("audio", ["rain.wav", "dog.mp4"], weights="random")
    info = xs.model_info()

Heavy libraries (torch, PyAV) load inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xsearch.errors import MediaError
from xsearch.models.fetch import FetchResult

if TYPE_CHECKING:
    import numpy as np

    from xsearch.models.spec import EncoderSpec
    from xsearch.models.weights import WeightsChoice

__all__ = [
    "FetchResult",
    "ModelInfo",
    "WeightsInfo",
    "embed",
    "fetch_weights",
    "list_configs",
    "model_info",
    "weights_info",
]

# How many bad inputs an error names one by one before it only counts the rest.
_NAMED_BAD_INPUTS = 10


@dataclass(frozen=True)
class WeightsInfo:
    """Which weights a call would use, found without loading anything."""

    path: Path | None  # the checkpoint; None for random weights
    source: str  # "weights" (given by the caller), "XSEARCH_WEIGHTS", "cache" or "random"
    sha256: str | None  # recorded beside the file by `fetch_weights`, if it was

    @property
    def is_random(self) -> bool:
        return self.path is None


@dataclass(frozen=True)
class ModelInfo:
    """The model a call would use: weights, architecture, size and device."""

    weights: str  # the checkpoint's path, or "random"
    source: str  # where the weights were found (see WeightsInfo.source)
    sha256: str | None  # recorded beside the checkpoint, if it was
    config: str  # registered config name, e.g. audioclip
    family: str  # model family, e.g. audioclip
    parameters: int
    embed_dim: int
    modalities: tuple[str, ...]
    device: str  # resolved: cpu, cuda, cuda:N

    def as_dict(self) -> dict[str, Any]:
        """The facts as JSON-ready values, in display order."""
        return {
            "weights": self.weights,
            "source": self.source,
            "sha256": self.sha256,
            "config": self.config,
            "family": self.family,
            "parameters": self.parameters,
            "embed_dim": self.embed_dim,
            "modalities": list(self.modalities),
            "device": self.device,
        }


def weights_info(weights: str | None = None) -> WeightsInfo:
    """Which weights `weights` (a path, "random", or None: XSEARCH_WEIGHTS, then the cache)
    stands for. Cheap: no torch; WeightsNotFound, saying how to get them, when there are none."""
    from xsearch.models.weights import recorded_sha256, resolve_weights

    choice = resolve_weights(weights)
    return WeightsInfo(choice.path, choice.source, recorded_sha256(choice.path))


def list_configs() -> list[str]:
    """Names of the registered model configs, sorted."""
    from xsearch.models.config import available_configs

    return available_configs()


def model_info(
    weights: str | None = None, config: str | None = None, device: str = "auto"
) -> ModelInfo:
    """What a command would load for `weights`, `config` and `device`: the checkpoint (or
    random weights), its config (detected from the checkpoint unless given), its parameter
    count and the device. Reads only the checkpoint's shapes, not its data."""
    import math

    from xsearch.models import resolve_device
    from xsearch.models.checkpoint import checkpoint_config, expected_shapes, read_shapes
    from xsearch.models.config import DEFAULT_CONFIG, get_config, spec_of

    choice = weights_info(weights)
    if choice.path is None:
        cfg = get_config(config or DEFAULT_CONFIG)
        n_params = sum(math.prod(s) for s in expected_shapes(cfg).values())
    else:
        cfg = checkpoint_config(choice.path, config)
        n_params = sum(t.numel() for t in read_shapes(choice.path).values())
    spec = spec_of(cfg)
    return ModelInfo(
        weights="random" if choice.path is None else str(choice.path),
        source=choice.source,
        sha256=choice.sha256,
        config=cfg.name,
        family=spec.family,
        parameters=n_params,
        embed_dim=spec.dim,
        modalities=spec.modalities,
        device=resolve_device(device),
    )


def embed(
    modality: str,
    inputs: Sequence[str | Path],
    weights: str | None = None,
    config: str | None = None,
    device: str = "auto",
    batch_size: int = 16,
    precision: str = "fp32",
) -> np.ndarray:
    """Embed texts, or image/audio/video files, into float32 L2-normalised rows [n, dim].

    A video gives its central frame for "image" and its audio track for "audio"; audio is
    decoded at the model's own sample rate. Every file is decoded before the model loads, so
    all bad inputs are reported at once: one MediaError naming them. An unknown modality, or
    one the model does not embed, is a UsageError; `weights` and `config` are as for
    `model_info`; `precision` as for `open_index`.
    """
    import numpy as np

    from xsearch.models import load_encoder
    from xsearch.models.precision import check_precision
    from xsearch.models.spec import check_modality
    from xsearch.models.weights import RANDOM, resolve_weights

    check_modality(modality)
    check_precision(precision, "cuda" if device.startswith("cuda") else "cpu")
    choice = resolve_weights(weights)
    spec = _spec_before_loading(choice, config)
    spec.require(modality)
    payloads = _decode_all(modality, list(inputs), spec)
    if not payloads:
        return np.empty((0, spec.dim), dtype=np.float32)
    encoder = load_encoder(
        RANDOM if choice.path is None else str(choice.path),
        config=spec.config,
        device=device,
        batch_size=batch_size,
        precision=precision,
    )
    return encoder.embed(modality, payloads)


def _spec_before_loading(choice: WeightsChoice, config: str | None) -> EncoderSpec:
    """The spec of the model `choice` and `config` will load, found without building it (a
    checkpoint's config is read from its shapes), so inputs can be decoded for it first."""
    from xsearch.models.config import spec_for
    from xsearch.models.sources import tower_source

    return spec_for(tower_source(choice, config).config)


def _decode_all(modality: str, items: list[str | Path], spec: EncoderSpec) -> list[Any]:
    """The model's payloads for `items`: texts as they are, files decoded for `spec`. Every
    file is tried, and one MediaError names all that failed."""
    if modality == "text":
        return [str(item) for item in items]
    decode = _decoder(modality, spec)
    decoded: list[Any] = []
    bad: list[tuple[str, str]] = []  # (input, why)
    for item in items:
        try:
            decoded.append(decode(Path(item)))
        except MediaError as err:
            bad.append((str(item), str(err)))
    if bad:
        raise MediaError(_bad_inputs_message(bad, len(items)))
    return decoded


def _decoder(modality: str, spec: EncoderSpec) -> Callable[[Path], Any]:
    """Path -> payload for `modality`, at the input the spec asks for."""
    from xsearch.media import load_audio, load_image

    if modality == "audio":
        assert spec.audio is not None  # spec.require checked it
        rate = spec.audio.sample_rate
        return lambda path: load_audio(path, rate)
    # The encoder resizes and crops to spec.image.size itself.
    return load_image


def _bad_inputs_message(bad: list[tuple[str, str]], total: int) -> str:
    """One line: the first failure's reason, then every other bad input by name (the first
    few, and a count past them)."""
    first = bad[0][1]
    if len(bad) == 1:
        return first
    others = [name for name, _ in bad[1:]]
    shown = ", ".join(others[:_NAMED_BAD_INPUTS])
    if len(others) > _NAMED_BAD_INPUTS:
        shown += f", ... ({len(others) - _NAMED_BAD_INPUTS} more)"
    return f"{len(bad)} of {total} inputs cannot be used: {first}; also {shown}"


def fetch_weights(
    variant: str = "full",
    dest_dir: str | Path | None = None,
    url: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> FetchResult:
    """Download the official AudioCLIP checkpoint `variant` ("full" or "partial") into
    `dest_dir` (default: the weights cache), resuming a partial download, verify it and
    record its sha256 beside it; a valid copy already there is kept. `url`: a mirror.
    `progress(bytes_so_far, total_or_None)` is called as bytes arrive."""
    from xsearch.models.fetch import fetch_weights as fetch

    folder = Path(dest_dir).expanduser() if dest_dir is not None else None
    return fetch(variant, folder, url=url, progress=progress)


def prepare_weights(weights: str | Path) -> str:
    """Derive the towers of the checkpoint at `weights` into the cache now (BatchNorms
    folded, one file per tower), so that the first command that embeds maps them instead of
    reading the checkpoint. A no-op when they are kept already. Returns the cache folder."""
    from xsearch.models.sources import checkpoint_source
    from xsearch.models.tower_cache import TOWERS

    source = checkpoint_source(Path(weights).expanduser())
    for tower in TOWERS:
        source.tower(tower)
    return str(source.folder)
