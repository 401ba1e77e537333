"""CLAP architectures as data: the registry's LAION-CLAP and Microsoft CLAP models, typed.

Each model is a JSON file in `configs/` (see registry.py) whose `family` is `laion-clap` or
`msclap`; the dataclasses below mirror its architecture fields, read without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from xsearch.errors import UsageError
from xsearch.models.registry import raw_config

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
    resampler: str  # how the official code resamples ("soxr_hq", "torchaudio_sinc"), for the record
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
class ClapConfig:
    name: str  # the model's registered name, e.g. laion-clap-tiny
    family: str  # "laion-clap" or "msclap"
    embed_dim: int  # width of the shared space (the projections' output)
    audio: ClapAudioConfig
    text: ClapTextConfig


def clap_config(name: str) -> ClapConfig:
    """The architecture of the CLAP-family model `name`; UsageError, in one line, for an
    unknown name or a model of another family."""
    raw = raw_config(name)
    if raw["family"] not in CLAP_FAMILIES:
        raise UsageError(
            f"model {name!r} belongs to the {raw['family']} family, not to a CLAP family "
            f"({' or '.join(CLAP_FAMILIES)})"
        )
    audio, text = dict(raw["audio"]), dict(raw["text"])
    htsat = dict(audio.pop("htsat"))
    htsat["depths"], htsat["heads"] = tuple(htsat["depths"]), tuple(htsat["heads"])
    return ClapConfig(
        name=name,
        family=raw["family"],
        embed_dim=raw["embed_dim"],
        audio=ClapAudioConfig(**audio, htsat=HtsatConfig(**htsat)),
        text=ClapTextConfig(**text),
    )
