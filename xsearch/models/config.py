"""Model architectures as data: one JSON file per named config in `configs/`.

`audioclip` is the official AudioCLIP architecture (CLIP RN50 towers + ESResNeXt-fbsp);
`audioclip-tiny` keeps every layer type and key but is small enough for fast tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from xsearch.errors import UsageError
from xsearch.models.spec import AudioInput, EncoderSpec, ImageInput, TextInput

DEFAULT_CONFIG = "audioclip"  # the official architecture; random weights use it unless told


@dataclass(frozen=True)
class VisionConfig:
    layers: tuple[int, int, int, int]  # bottleneck blocks per stage of CLIP's ModifiedResNet
    width: int  # channels of the first stage (64 for RN50)
    head_width: int  # channels per head of the attention pool
    image_size: int  # side of the square input, pixels


@dataclass(frozen=True)
class TextConfig:
    context_length: int  # tokens, start and end tokens included
    vocab_size: int  # CLIP BPE vocabulary
    width: int  # transformer channels
    heads: int
    layers: int


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int  # Hz the waveform must have; the frontend has no resampler of its own
    n_fft: int  # frame length after zero-padding; the frontend has n_fft // 2 + 1 bins
    win_length: int  # samples per frame before padding
    hop_length: int  # samples between frame starts
    layers: tuple[int, int, int, int]  # ResNeXt bottleneck blocks per stage
    groups: int  # ResNeXt cardinality
    width_per_group: int

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1


@dataclass(frozen=True)
class ModelConfig:
    name: str
    embed_dim: int  # the shared space's dimension
    vision: VisionConfig
    text: TextConfig
    audio: AudioConfig


def available_configs() -> list[str]:
    """Names of the registered configs, sorted."""
    folder = resources.files("xsearch.models") / "configs"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def get_config(name: str) -> ModelConfig:
    """The config registered under `name`; an unknown name is a usage error listing the known."""
    known = available_configs()
    if name not in known:
        raise UsageError(f"unknown model config {name!r}; known configs: {', '.join(known)}")
    raw = json.loads((resources.files("xsearch.models") / "configs" / f"{name}.json").read_text())
    vision, text, audio = raw["vision"], raw["text"], raw["audio"]
    return ModelConfig(
        name=name,
        embed_dim=raw["embed_dim"],
        vision=VisionConfig(**{**vision, "layers": tuple(vision["layers"])}),
        text=TextConfig(**text),
        audio=AudioConfig(**{**audio, "layers": tuple(audio["layers"])}),
    )


def spec_of(config: ModelConfig) -> EncoderSpec:
    """What an AudioCLIP model of `config` embeds and expects (clips of any length)."""
    return EncoderSpec(
        family="audioclip",
        config=config.name,
        dim=config.embed_dim,
        image=ImageInput(config.vision.image_size),
        audio=AudioInput(config.audio.sample_rate),
        text=TextInput(config.text.context_length),
    )


def spec_for(name: str) -> EncoderSpec:
    """The spec of the registered config `name`, without building the model or importing
    torch: what callers need to prepare inputs (sample rate, image size) before loading."""
    return spec_of(get_config(name))
