"""AudioCLIP: open_clip's CLIP RN50 image and text towers plus the ESResNeXt-fbsp audio tower.

Subclassing open_clip's CLIP keeps the official (OpenAI-format) key names, so an official
AudioCLIP checkpoint loads key for key.
"""

from __future__ import annotations

import math

import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from torch import nn

from xsearch.models.audio_tower import ESResNeXtFBSP
from xsearch.models.config import ModelConfig


class AudioCLIP(CLIP):
    def __init__(self, cfg: ModelConfig) -> None:
        v, t = cfg.vision, cfg.text
        super().__init__(
            cfg.embed_dim,
            vision_cfg=CLIPVisionCfg(
                layers=v.layers, width=v.width, head_width=v.head_width, image_size=v.image_size
            ),
            text_cfg=CLIPTextCfg(
                context_length=t.context_length,
                vocab_size=t.vocab_size,
                width=t.width,
                heads=t.heads,
                layers=t.layers,
            ),
            quick_gelu=True,  # OpenAI's CLIP was trained with QuickGELU
        )
        self.config = cfg
        self.audio = ESResNeXtFBSP(cfg.audio, cfg.embed_dim)
        self.logit_scale_ai = nn.Parameter(torch.tensor(math.log(100.0)))
        self.logit_scale_at = nn.Parameter(torch.tensor(math.log(100.0)))

    def causal_mask(self, length: int) -> torch.Tensor:
        device = self.positional_embedding.device
        return torch.full((length, length), float("-inf"), device=device).triu_(1)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Tokens [batch, positions] -> embeddings [batch, embed_dim].

        The transformer is causal and the embedding is read at the end token, so callers may
        pass only the positions up to the longest end token: the result is the same.
        """
        n = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:n]
        x = self.ln_final(self.transformer(x, attn_mask=self.causal_mask(n)))
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        x = x @ self.text_projection
        return nn.functional.normalize(x, dim=-1) if normalize else x

    def encode_audio(self, wave: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = self.audio(wave)
        return nn.functional.normalize(x, dim=-1) if normalize else x

    def logit_scales(self) -> dict[str, float]:
        """exp() of the learned temperatures, clamped to [1, 100] as in the official model."""
        pairs = {
            "image-text": self.logit_scale,
            "audio-image": self.logit_scale_ai,
            "audio-text": self.logit_scale_at,
        }
        return {k: float(v.detach().exp().clamp(1.0, 100.0)) for k, v in pairs.items()}
