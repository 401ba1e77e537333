"""LAION-CLAP and Microsoft CLAP as torch modules whose state dicts are the official ones.

`LaionClap` (HTS-AT + RoBERTa, MLP projections) has the keys of `laion_clap`'s `CLAP` model
without the `module.` prefix its checkpoints carry; `MsClap` (HTS-AT + GPT-2, residual
projections) has the keys of `msclap`'s `CLAP`. Both give the official, unnormalised
embeddings:

- audio: the projection of HTS-AT's mean token (the official `latent_output`), from clips
  already prepared by `clap_audio.prepare_clip`;
- text: LAION projects RoBERTa's pooler output (tanh of a dense layer over `<s>`); MS CLAP
  projects GPT-2's hidden state at index (number of ids that are not 0) - 1, as msclap does.
  Id 0 is GPT-2's `!`, which msclap also pads with, so a text holding `!` moves that index
  back by one per `!`; the official code does the same, so this keeps it.

The training-only parts (`audio_transform`, `text_transform`, the logit scales) are kept so
that checkpoints load strictly; no embedding uses them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xsearch.models.clap_config import ClapConfig
from xsearch.models.clap_text import Gpt2, Roberta
from xsearch.models.htsat import Htsat

# The submodules each tower's embedding uses: what an encoder loads for one modality.
TOWER_MODULES: dict[str, dict[str, tuple[str, ...]]] = {
    "laion-clap": {
        "audio": ("audio_branch", "audio_projection"),
        "text": ("text_branch", "text_projection"),
    },
    "msclap": {"audio": ("audio_encoder",), "text": ("caption_encoder",)},
}


def _mlp_projection(width_in: int, width: int) -> nn.Sequential:
    """LAION's projection: Linear, ReLU, Linear (keys 0 and 2)."""
    return nn.Sequential(nn.Linear(width_in, width), nn.ReLU(), nn.Linear(width, width))


class MlpTransform(nn.Module):
    """LAION's training-time transform over the joint space (keys sequential.0, .3)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.sequential = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(), nn.Dropout(0.1), nn.Linear(width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequential(x)


class LaionClap(nn.Module):
    def __init__(self, config: ClapConfig) -> None:
        super().__init__()
        self.config = config
        joint = config.embed_dim
        self.audio_branch = Htsat(config.audio.htsat)
        self.text_branch = Roberta(config.text)
        self.text_transform = MlpTransform(joint)
        self.text_projection = _mlp_projection(config.text.width, joint)
        self.audio_transform = MlpTransform(joint)
        self.audio_projection = _mlp_projection(config.audio.htsat.num_features, joint)
        self.logit_scale_a = nn.Parameter(torch.full((), math.log(1 / 0.07)))
        self.logit_scale_t = nn.Parameter(torch.full((), math.log(1 / 0.07)))

    def audio_embedding(self, waves: torch.Tensor) -> torch.Tensor:
        """Prepared clips [B, clip_samples] in [-1, 1] -> [B, embed_dim], unnormalised."""
        return self.audio_projection(self.audio_branch(waves))

    def text_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """RoBERTa ids and mask [B, T] -> [B, embed_dim], unnormalised."""
        _, pooled = self.text_branch(input_ids, attention_mask)
        return self.text_projection(pooled)


class Projection(nn.Module):
    """MS CLAP's projection: LayerNorm(linear1(x) + linear2(gelu(linear1(x)))), no biases."""

    def __init__(self, width_in: int, width: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(width_in, width, bias=False)
        self.linear2 = nn.Linear(width, width, bias=False)
        self.layer_norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.linear1(x)
        return self.layer_norm(first + self.linear2(F.gelu(first)))


class HtsatWrapper(nn.Module):
    """msclap's `HTSATWrapper`: only there for the `.htsat` in the official key names."""

    def __init__(self, htsat: Htsat) -> None:
        super().__init__()
        self.htsat = htsat


class MsAudioEncoder(nn.Module):
    def __init__(self, config: ClapConfig) -> None:
        super().__init__()
        self.base = HtsatWrapper(Htsat(config.audio.htsat))
        self.projection = Projection(config.audio.htsat.num_features, config.embed_dim)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.projection(self.base.htsat(waves))


class MsTextEncoder(nn.Module):
    def __init__(self, config: ClapConfig) -> None:
        super().__init__()
        self.base = Gpt2(config.text)
        self.projection = Projection(config.text.width, config.embed_dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.base(input_ids, attention_mask)
        last = (input_ids != 0).sum(dim=-1) - 1  # msclap's index (see the module docstring)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self.projection(hidden[rows, last])


class MsClap(nn.Module):
    def __init__(self, config: ClapConfig) -> None:
        super().__init__()
        self.config = config
        self.audio_encoder = MsAudioEncoder(config)
        self.caption_encoder = MsTextEncoder(config)
        self.logit_scale = nn.Parameter(torch.full((), math.log(1 / 0.07)))

    def audio_embedding(self, waves: torch.Tensor) -> torch.Tensor:
        """Prepared clips [B, clip_samples] in [-1, 1] -> [B, embed_dim], unnormalised."""
        return self.audio_encoder(waves)

    def text_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """GPT-2 ids and mask [B, T] -> [B, embed_dim], unnormalised."""
        return self.caption_encoder(input_ids, attention_mask)


ClapModel = LaionClap | MsClap


def build_clap(config: ClapConfig, device: torch.device | str | None = None) -> ClapModel:
    """A CLAP model of `config` with fresh weights (seed torch first for reproducible ones), in
    eval mode. On `device` when given, else torch's default device: with `device="meta"` (or
    inside `with torch.device("meta")`) nothing is allocated, for loading a checkpoint with
    `load_state_dict(..., assign=True)`."""
    kind = LaionClap if config.family == "laion-clap" else MsClap
    if device is None:
        return kind(config).eval()
    with torch.device(device):
        return kind(config).eval()


def tower_modules(model: nn.Module, modality: str) -> list[nn.Module]:
    """The submodules of `model` that embed `modality` ("audio" or "text")."""
    family: str = getattr(model, "config").family  # noqa: B009 (any CLAP model)
    return [getattr(model, name) for name in TOWER_MODULES[family][modality]]


def tower_prefixes(family: str, modality: str) -> tuple[str, ...]:
    """State-dict key prefixes of the `modality` tower of a `family` model."""
    return tuple(f"{name}." for name in TOWER_MODULES[family][modality])
