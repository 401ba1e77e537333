"""CLAP architectures as data: LAION-CLAP and Microsoft CLAP configs, read without torch.

Each config is a JSON file in `configs/` whose `family` is `laion-clap` or `msclap`; the
dataclasses below mirror its fields, so a caller can learn a model's sample rate, clip length
and vector width before anything heavy is imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from xsearch.errors import UsageError
from xsearch.models.spec import AudioInput, EncoderSpec, TextInput

CLAP_FAMILIES = ("laion-clap", "msclap")


@dataclass(frozen=True)
class HtsatConfig:
    """HTS-AT (a Swin Transformer over a folded log-mel image) and its frontend."""

    mel_sample_rate: int  # Hz the mel matrix is built for (MS CLAP: 32 kHz on 44.1 kHz audio)
    n_fft: int  # STFT frame and window length, samples
    hop_length: int  # samples between STFT frames
    mel_bins: int  # mel filters, also the BatchNorm (bn0) width
    fmin: float  # lowest mel filter edge, Hz
    fmax: float  # highest mel filter edge, Hz
    spec_size: int  # side of the square image the Swin sees
    patch_size: int  # side (and stride) of the patch embedding's square patches
    window_size: int  # Swin attention window side, clipped to a stage's resolution
    width: int  # channels of the first stage; doubled by every patch merging
    depths: tuple[int, ...]  # Swin blocks per stage
    heads: tuple[int, ...]  # attention heads per stage
    mlp_ratio: float  # MLP hidden width over block width
    classes: int  # AudioSet classes of the token-semantic head (kept for the checkpoint)

    @property
    def freq_ratio(self) -> int:
        """How many time slices the mel image is folded into to make it square."""
        return self.spec_size // self.mel_bins

    @property
    def num_features(self) -> int:
        """Channels of the last stage: the width of the pooled audio embedding."""
        return self.width * 2 ** (len(self.depths) - 1)


@dataclass(frozen=True)
class ClapAudioConfig:
    sample_rate: int  # Hz the waveform must have
    clip_seconds: float  # the model's clip; longer audio is cut into clips of this length
    resampler: str  # how the official code resamples ("soxr_hq", "swr"), for the record
    int16_round_trip: bool  # LAION quantises the clip to int16 and back before the model
    fill: str  # a short clip: "repeatpad" (tile whole copies, zero-pad) or "tile" (tile, cut)
    htsat: HtsatConfig  # the audio tower
    projection: str  # "mlp-relu" (LAION) or "residual-gelu-layernorm" (MS CLAP)

    @property
    def clip_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)


@dataclass(frozen=True)
class ClapTextConfig:
    tower: str  # "roberta" (LAION) or "gpt2" (MS CLAP)
    context_length: int  # tokens the tokenizer pads to (RoBERTa also cuts to it)
    vocab_size: int  # rows of the token embedding
    width: int  # transformer channels
    layers: int  # transformer blocks
    heads: int  # attention heads
    mlp_width: int  # hidden width of each block's MLP
    max_positions: int  # rows of the position embedding (RoBERTa's include 2 offsets)
    projection: str  # same kinds as the audio projection


@dataclass(frozen=True)
class RemoteFile:
    filename: str  # the name the file has on disk
    url: str  # where the official copy is published
    name: str = ""  # the variant it is (e.g. "630k-best"); empty for tokenizer files


@dataclass(frozen=True)
class ClapConfig:
    name: str  # the config's registered name, e.g. laion-clap-tiny
    family: str  # "laion-clap" or "msclap"
    embed_dim: int  # width of the shared space (the projections' output)
    audio: ClapAudioConfig  # the audio tower and the clip it takes
    text: ClapTextConfig  # the text tower and its tokenizer's context
    description: str = ""  # one line for people
    licence: str = ""  # of the official weights and code
    weights: tuple[RemoteFile, ...] = ()  # the official checkpoints; none for tiny configs
    tokenizer: tuple[RemoteFile, ...] = ()  # vocab.json and merges.txt of the official text


def _configs_folder():
    return resources.files("xsearch.models") / "configs"


def clap_config_names() -> list[str]:
    """Names of the registered configs of a CLAP family, sorted."""
    names = []
    for entry in _configs_folder().iterdir():
        if entry.name.endswith(".json"):
            raw = json.loads(entry.read_text())
            if raw.get("family") in CLAP_FAMILIES:
                names.append(entry.name[: -len(".json")])
    return sorted(names)


def clap_config(name: str) -> ClapConfig:
    """The CLAP config registered as `name`; UsageError, in one line, for an unknown name or
    a config of another family."""
    path = _configs_folder() / f"{name}.json"
    if "/" in name or not path.is_file():
        known = ", ".join(clap_config_names())
        raise UsageError(f"unknown CLAP config {name!r}; known CLAP configs: {known}")
    raw = json.loads(path.read_text())
    if raw.get("family") not in CLAP_FAMILIES:
        raise UsageError(
            f"config {name!r} belongs to the {raw.get('family')} family, not to a CLAP "
            f"family ({' or '.join(CLAP_FAMILIES)})"
        )
    return parse_clap_config(name, raw)


def parse_clap_config(name: str, raw: dict[str, Any]) -> ClapConfig:
    """A ClapConfig from a config's JSON object."""
    audio, text = dict(raw["audio"]), dict(raw["text"])
    htsat = dict(audio.pop("htsat"))
    htsat["depths"], htsat["heads"] = tuple(htsat["depths"]), tuple(htsat["heads"])
    return ClapConfig(
        name=name,
        family=raw["family"],
        embed_dim=raw["embed_dim"],
        audio=ClapAudioConfig(**audio, htsat=HtsatConfig(**htsat)),
        text=ClapTextConfig(**text),
        description=raw.get("description", ""),
        licence=raw.get("licence", ""),
        weights=tuple(_remote(w) for w in raw.get("weights", ())),
        tokenizer=tuple(_remote(t) for t in raw.get("tokenizer", ())),
    )


def _remote(entry: dict[str, Any]) -> RemoteFile:
    # only the fields read here: the registry may record more (size, digest)
    return RemoteFile(entry["filename"], entry["url"], entry.get("name", ""))


def clap_spec(config: ClapConfig) -> EncoderSpec:
    """What a CLAP model of `config` embeds (audio and text) and the input it expects."""
    return EncoderSpec(
        family=config.family,
        config=config.name,
        dim=config.embed_dim,
        audio=AudioInput(
            config.audio.sample_rate, config.audio.clip_seconds, config.audio.resampler
        ),
        text=TextInput(config.text.context_length),
    )
