"""The AudioCLIP architecture as data: the `configs/` files of the audioclip family.

`audioclip` is the official AudioCLIP architecture (CLIP RN50 towers + ESResNeXt-fbsp);
`audioclip-tiny` keeps every layer type and key but is small enough for fast tests. Every
model of every family is listed by `registry.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from xsearch.errors import UsageError
from xsearch.models.registry import DEFAULT_MODEL, names_of_family, raw_config
from xsearch.models.registry import spec_for as spec_for
from xsearch.models.spec import AudioInput, EncoderSpec, ImageInput, TextInput

DEFAULT_CONFIG = DEFAULT_MODEL  # the official architecture; random weights use it unless told


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
    """Names of the AudioCLIP configs, sorted."""
    return names_of_family("audioclip")


def get_config(name: str) -> ModelConfig:
    """The AudioCLIP config `name`; an unknown name, or another family's model, is a usage
    error in one line."""
    raw = raw_config(name)
    if raw["family"] != "audioclip":
        raise UsageError(f"model {name} is a {raw['family']} model, not an AudioCLIP config")
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
