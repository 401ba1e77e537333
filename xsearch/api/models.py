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

from xsearch.errors import MediaError, UsageError
from xsearch.models.fetch import FetchResult
from xsearch.models.registry import ModelCard

if TYPE_CHECKING:
    import numpy as np

    from xsearch.models.spec import EncoderSpec
    from xsearch.models.weights import WeightsChoice

__all__ = [
    "FetchResult",
    "ModelCard",
    "ModelInfo",
    "WeightsInfo",
    "embed",
    "fetch_weights",
    "list_configs",
    "list_models",
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


def weights_info(weights: str | None = None, model: str | None = None) -> WeightsInfo:
    """Which weights `weights` (a path, "random", or None: XSEARCH_WEIGHTS, then the cache's
    files of `model`, default audioclip) stands for. Cheap: no torch; WeightsNotFound, saying
    how to get them, when there are none."""
    from xsearch.models.weights import recorded_sha256, resolve_weights

    choice = resolve_weights(weights, model)
    return WeightsInfo(choice.path, choice.source, recorded_sha256(choice.path))


def list_models() -> list[ModelCard]:
    """Every registered model: name, family, modalities, width, weights and licence."""
    from xsearch.models.registry import model_card, model_names

    return [model_card(name) for name in model_names()]


def list_configs() -> list[str]:
    """Names of the registered models (a model's name is the config an index records)."""
    from xsearch.models.registry import model_names

    return model_names()


def model_option(model: str | None, config: str | None) -> str | None:
    """The model named by `model` or by its older spelling `config` (the same option)."""
    if model is not None and config is not None and model != config:
        raise UsageError(f"model {model!r} and config {config!r} disagree: give one")
    return model if model is not None else config


def model_info(
    weights: str | None = None,
    config: str | None = None,
    device: str = "auto",
    *,
    model: str | None = None,
) -> ModelInfo:
    """What a command would load for `weights`, `model` (or `config`, its older name) and
    `device`: the checkpoint (or random weights), its model (an AudioCLIP checkpoint's config
    is detected unless given), its parameter count and the device. Reads only the
    checkpoint's shapes, not its data."""
    import math

    from xsearch.models import resolve_device
    from xsearch.models.checkpoint import checkpoint_config, expected_shapes, read_shapes
    from xsearch.models.config import DEFAULT_CONFIG, get_config, spec_of
    from xsearch.models.registry import family_of

    config = model_option(model, config)
    if config is not None and family_of(config) != "audioclip":
        return _family_info(weights, config, resolve_device(device))
    choice = weights_info(weights, config)
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


def _family_info(weights: str | None, model: str, device: str) -> ModelInfo:
    """model_info for a model of another family than AudioCLIP: its checkpoint checked
    against the architecture (or the architecture's shapes, for random weights)."""
    import math

    from xsearch.models.registry import model_card

    choice = weights_info(weights, model)
    shapes = _family_shapes(model, choice.path)
    spec = model_card(model).spec
    return ModelInfo(
        weights="random" if choice.path is None else str(choice.path),
        source=choice.source,
        sha256=choice.sha256,
        config=model,
        family=spec.family,
        parameters=sum(math.prod(s) for s in shapes),
        embed_dim=spec.dim,
        modalities=spec.modalities,
        device=device,
    )


def _family_shapes(model: str, checkpoint: Path | None) -> list[tuple[int, ...]]:
    """The shapes of model `model`'s tensors: read from its checkpoint, checked, or those of
    its architecture (built on the meta device) for random weights."""
    from xsearch.models.registry import family_of

    family = family_of(model)
    if family == "mmv":
        from xsearch.models.mmv_checkpoint import expected_state, load_mmv_state

        if checkpoint is None:
            return list(expected_state(model).values())
        return [tuple(t.shape) for t in load_mmv_state(checkpoint, model)[0].values()]
    if family == "cav-mae":
        from xsearch.models.cav_mae import cav_mae_config
        from xsearch.models.cav_mae_checkpoint import expected_state as cav_state
        from xsearch.models.cav_mae_checkpoint import load_cav_mae_state

        config = cav_mae_config(model)
        if checkpoint is None:
            return [shape for shape, _ in cav_state(config).values()]
        return [tuple(t.shape) for t in load_cav_mae_state(checkpoint, config).values()]
    from xsearch.models.clap_config import clap_config

    clap = clap_config(model)
    if checkpoint is None:
        import torch

        from xsearch.models.clap import build_clap

        with torch.device("meta"):
            return [tuple(t.shape) for t in build_clap(clap).state_dict().values()]
    from xsearch.models.clap_checkpoint import load_clap_state

    return [tuple(t.shape) for t in load_clap_state(checkpoint, clap).values()]


def embed(
    modality: str,
    inputs: Sequence[str | Path],
    weights: str | None = None,
    config: str | None = None,
    device: str = "auto",
    batch_size: int = 16,
    precision: str = "fp32",
    *,
    model: str | None = None,
) -> np.ndarray:
    """Embed texts, or image/audio/video files, into float32 L2-normalised rows [n, dim].

    A video gives its central frame for "image" and its audio track for "audio"; audio is
    decoded at the model's own sample rate. Every file is decoded before the model loads, so
    all bad inputs are reported at once: one MediaError naming them. An unknown modality, or
    one the model does not embed, is a UsageError; `weights`, `model` and `config` are as
    for `model_info`; `precision` as for `open_index`.
    """
    import numpy as np

    from xsearch.models import load_encoder
    from xsearch.models.precision import check_precision
    from xsearch.models.spec import check_modality
    from xsearch.models.weights import RANDOM, resolve_weights

    check_modality(modality)
    check_precision(precision, "cuda" if device.startswith("cuda") else "cpu")
    config = model_option(model, config)
    choice = resolve_weights(weights, config)
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
    from xsearch.models.registry import family_of
    from xsearch.models.sources import tower_source

    if config is not None and family_of(config) != "audioclip":
        return spec_for(config)
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
        audio = spec.audio
        return lambda path: load_audio(
            path, audio.sample_rate, resampler=audio.resampler, channels=audio.channels
        )
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
    variant: str | None = None,
    dest_dir: str | Path | None = None,
    url: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    *,
    model: str = "audioclip",
    files_url: str | None = None,
) -> FetchResult:
    """Download the official checkpoint `variant` of `model` (default: its first, e.g.
    AudioCLIP's "full"; see `list_models`) and the files its tokenizer needs into `dest_dir`
    (default: the model's folder in the weights cache), resuming a partial download, verify
    them and record the checkpoint's sha256 beside it; valid copies already there are kept.
    `url`: a mirror of the checkpoint, `files_url`: a folder URL holding the tokenizer files.
    `progress(bytes_so_far, total_or_None)` is called as bytes arrive."""
    from xsearch.models.fetch import fetch_weights as fetch

    folder = Path(dest_dir).expanduser() if dest_dir is not None else None
    return fetch(variant, folder, model=model, url=url, files_url=files_url, progress=progress)


def convert_weights(
    model: str,
    source: str | Path,
    dest: str | Path | None = None,
    vocabulary: str | Path | None = None,
) -> Path:
    """Convert an official parameter file that is not a PyTorch checkpoint (MMV's `.pkl`,
    read without running any of its code) into the checkpoint commands load: `dest`, by
    default the model's file in the weights cache, where commands find it. `vocabulary`: the
    text tower's word list (one word per line), kept in the checkpoint. Returns `dest`."""
    from xsearch.models.mmv_checkpoint import convert_mmv
    from xsearch.models.registry import family_of, model_card
    from xsearch.models.weights import weights_dir

    if family_of(model) != "mmv":
        raise UsageError(f"model {model}'s official weights load as they are: nothing to convert")
    card = model_card(model)
    source = Path(source).expanduser()
    if not source.is_file():
        raise UsageError(f"{source}: no such file")
    if dest is None:
        if not card.releases:
            raise UsageError(f"model {model} has no published weights: say where to write (--out)")
        named = [r for r in card.releases if r.filename == source.name] or list(card.releases)
        dest = weights_dir(model) / named[0].installed
    return convert_mmv(source, model, Path(dest).expanduser(), vocabulary)


def prepare_weights(weights: str | Path, model: str = "audioclip") -> str | None:
    """Derive the towers of the AudioCLIP checkpoint at `weights` into the cache now
    (BatchNorms folded, one file per tower), so that the first command that embeds maps them
    instead of reading the checkpoint. A no-op when they are kept already, and for the other
    families (they map the checkpoint itself). Returns the cache folder, or None."""
    from xsearch.models.registry import family_of
    from xsearch.models.sources import checkpoint_source
    from xsearch.models.tower_cache import TOWERS

    if family_of(model) != "audioclip":
        return None

    source = checkpoint_source(Path(weights).expanduser())
    for tower in TOWERS:
        source.tower(tower)
    return str(source.folder)
