"""What an encoder embeds and what input it expects, as data: importable without torch.

Every layer that prepares inputs (decode workers, query embedding, the Ray backend) reads
these facts from the encoder instead of assuming AudioCLIP's 44.1 kHz audio and 224 px
images, and the store records each modality's vector width from them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xsearch.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from xsearch.models.weights import WeightsChoice

# Audio windows of models that take clips of any length (AudioCLIP), seconds.
DEFAULT_WINDOW_SECONDS = 10.0

# Every modality an encoder may embed; an encoder embeds a subset of them.
MODALITIES = ("image", "audio", "text")


def check_modality(modality: str) -> None:
    """UsageError, in one line, unless `modality` is one of MODALITIES."""
    if modality not in MODALITIES:
        raise UsageError(f"unknown modality {modality!r}; use {', '.join(MODALITIES)}")


@dataclass(frozen=True)
class AudioInput:
    sample_rate: int  # Hz the waveform must have (decoders resample to it)
    clip_seconds: float | None = None  # the model's clip length; None: any length
    # How decoders resample to `sample_rate`: "swr" (FFmpeg's libswresample), "soxr_hq"
    # (librosa's default, LAION-CLAP's loader) or "torchaudio_sinc" (Microsoft CLAP's
    # loader): each model's own, kept for its exact vectors (see xsearch.media.load_audio)
    resampler: str = "swr"
    # Which sound a multi-channel file gives: "mean" (the channels averaged) or "first" (the
    # first channel, as CAV-MAE's loader takes it), each model's own
    channels: str = "mean"


# CLIP's image normalisation (OpenAI's dataset statistics), per RGB channel
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImageInput:
    size: int  # side of the square the model sees, pixels (decoders crop to it)
    mean: tuple[float, float, float] = CLIP_MEAN  # subtracted from pixels scaled to [0, 1]
    std: tuple[float, float, float] = CLIP_STD  # then divided by, per channel
    # A model of video clips (MMV) sees `frames` frames `fps` a second; 1: single pictures
    frames: int = 1
    fps: float | None = None

    @property
    def clip(self) -> tuple[int, float] | None:
        """(frames, fps) of a model of clips; None for a model of pictures."""
        return (self.frames, float(self.fps)) if self.frames > 1 and self.fps else None

    @property
    def clip_seconds(self) -> float | None:
        """How long a clip lasts, for a model of clips; None for a model of pictures."""
        return self.frames / self.fps if self.clip and self.fps else None


@dataclass(frozen=True)
class TextInput:
    context_length: int  # tokens, special tokens included; longer texts are cut


@dataclass(frozen=True)
class Space:
    """One embedding space of a model that has several (MMV: video and audio in one, text
    with both in another): a row holds each space's part side by side, `width` values from
    `start`, and the modalities compared in it."""

    name: str
    start: int
    width: int
    modalities: tuple[str, ...]

    @property
    def stop(self) -> int:
        return self.start + self.width


@dataclass(frozen=True)
class EncoderSpec:
    """A model's modalities, vector width and input for each modality."""

    family: str  # e.g. audioclip
    config: str  # the named config, e.g. audioclip-tiny
    dim: int  # width of every vector it returns
    image: ImageInput | None = None
    audio: AudioInput | None = None
    text: TextInput | None = None
    # A model of several spaces: each row is their parts side by side, each part unit length
    # or zero (a modality outside the space); empty: one space of every modality
    spaces: tuple[Space, ...] = ()

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities it embeds, in MODALITIES order."""
        return tuple(m for m in MODALITIES if getattr(self, m) is not None)

    @property
    def widths(self) -> dict[str, int]:
        """Modality -> vector width, what an index of this model records."""
        return {m: self.dim for m in self.modalities}

    def require(self, modality: str) -> None:
        """UsageError, in one line, when the model cannot embed `modality`."""
        check_modality(modality)
        if getattr(self, modality) is None:
            raise UsageError(
                f"model {self.config} embeds {', '.join(self.modalities)}, not {modality}"
            )

    def as_dict(self) -> dict[str, Any]:
        facts = {"family": self.family, "config": self.config, "dim": self.dim,
                 "modalities": list(self.modalities)}  # fmt: skip
        if self.spaces:
            facts["spaces"] = {s.name: {"width": s.width, "modalities": list(s.modalities)}
                               for s in self.spaces}  # fmt: skip
        return facts

    @property
    def window_seconds(self) -> float:
        """The audio window ingest cuts long files into: the model's clip length, or
        DEFAULT_WINDOW_SECONDS for a model that takes clips of any length."""
        clip = self.audio.clip_seconds if self.audio else None
        return float(clip) if clip else DEFAULT_WINDOW_SECONDS


class Encoder(ABC):
    """Embeds batches of the modalities in `spec` into one space of `spec.dim` dimensions.
    Rows are float32 and L2-normalised (for a model of several `spec.spaces`, each space's
    part is, or is zero). Methods for modalities the spec lacks raise UsageError (see
    `embed`)."""

    spec: EncoderSpec
    weights: WeightsChoice  # the checkpoint it was loaded from, or random weights
    batch_size: int = 16

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.spec.modalities

    @property
    def sample_rate(self) -> int | None:
        return self.spec.audio.sample_rate if self.spec.audio else None

    def embed(self, modality: str, payloads: Sequence[Any]) -> np.ndarray:
        """One batch of `modality` payloads (texts, PIL images, mono waveforms at the spec's
        sample rate) -> [n, dim]."""
        self.spec.require(modality)
        if modality == "image":
            return self.embed_images(payloads)
        if modality == "audio":
            return self.embed_audio(payloads)
        return self.embed_text(payloads)

    @abstractmethod
    def embed_text(self, texts: Sequence[str | Sequence[str]]) -> np.ndarray:
        """Texts (a label list is joined with ', ') -> [n, dim]."""

    @abstractmethod
    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """PIL images -> [n, dim]."""

    @abstractmethod
    def embed_audio(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Mono waveforms at `sample_rate`, int16 scale, any lengths -> [n, dim]."""
