"""CAV-MAE's encoder (Gong et al., ICLR 2023; YuanGongND/cav-mae), as its retrieval uses it.

Two ViT-B streams: an audio one over the log-mel filterbank seen as a 1 x 128 x 1024 picture
(16 x 16 patches: 8 along frequency, 64 along time) and an image one over 224 x 224 pixels
(14 x 14 patches). Each adds its fixed sine-cosine positions and a learned modality token,
runs its own 11 blocks, then the one shared block with that modality's own LayerNorms, then
its own final LayerNorm (`CAVMAE.forward_feat`). The retrieval embedding is the mean over the
stream's tokens, L2-normalised: 768-d, no projection head. The MAE decoder is not needed and
not built. Names follow the official module so that a checkpoint loads key for key.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from xsearch.models.registry import raw_config

FAMILY = "cav-mae"
LAYER_NORM_EPS = 1e-5  # the official model uses nn.LayerNorm's default


@dataclass(frozen=True)
class CavMaeConfig:
    name: str
    width: int
    depth: int  # blocks in all: modality-specific ones, then shared ones
    modality_specific_depth: int
    heads: int
    mlp_ratio: float
    patch_size: int
    mel_bins: int
    frames: int  # fbank frames of one clip
    fbank_mean: float
    fbank_std: float
    image_size: int
    sample_rate: int

    @property
    def audio_grid(self) -> tuple[int, int]:
        return self.mel_bins // self.patch_size, self.frames // self.patch_size

    @property
    def image_grid(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side


@cache
def cav_mae_config(name: str) -> CavMaeConfig:
    raw = raw_config(name)
    towers, audio, fbank = raw["towers"], raw["audio"], raw["audio"]["fbank"]
    return CavMaeConfig(
        name=name,
        width=towers["width"],
        depth=towers["depth"],
        modality_specific_depth=towers["modality_specific_depth"],
        heads=towers["heads"],
        mlp_ratio=towers["mlp_ratio"],
        patch_size=towers["patch_size"],
        mel_bins=fbank["mel_bins"],
        frames=fbank["frames"],
        fbank_mean=fbank["mean"],
        fbank_std=fbank["std"],
        image_size=raw["vision"]["image_size"],
        sample_rate=audio["sample_rate"],
    )


class PatchEmbed(nn.Module):
    def __init__(self, channels: int, width: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, width, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, width = x.shape
        qkv = self.qkv(x).reshape(n, tokens, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.proj(out.transpose(1, 2).reshape(n, tokens, width))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block with three pairs of LayerNorms: the shared ones (used by
    the modality-specific blocks) and one pair per modality (used in the shared block)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        for name in ("norm1", "norm1_a", "norm1_v", "norm2", "norm2_a", "norm2_v"):
            setattr(self, name, nn.LayerNorm(width, eps=LAYER_NORM_EPS))
        self.attn = Attention(width, heads)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x: torch.Tensor, modality: str = "") -> torch.Tensor:
        suffix = f"_{modality}" if modality else ""
        x = x + self.attn(getattr(self, f"norm1{suffix}")(x))
        return x + self.mlp(getattr(self, f"norm2{suffix}")(x))


class CavMaeEncoderModel(nn.Module):
    """The encoder half of `CAVMAE`; `audio_embedding` and `image_embedding` give the unit
    retrieval vectors."""

    def __init__(self, config: CavMaeConfig) -> None:
        super().__init__()
        width, patch = config.width, config.patch_size
        self.config = config
        self.patch_embed_a = PatchEmbed(1, width, patch)
        self.patch_embed_v = PatchEmbed(3, width, patch)
        self.modality_a = nn.Parameter(torch.zeros(1, 1, width))
        self.modality_v = nn.Parameter(torch.zeros(1, 1, width))
        audio_tokens = config.audio_grid[0] * config.audio_grid[1]
        image_tokens = config.image_grid[0] * config.image_grid[1]
        self.pos_embed_a = nn.Parameter(torch.zeros(1, audio_tokens, width))
        self.pos_embed_v = nn.Parameter(torch.zeros(1, image_tokens, width))

        def blocks(count: int) -> nn.ModuleList:
            return nn.ModuleList(Block(width, config.heads, config.mlp_ratio) for _ in range(count))

        self.blocks_a = blocks(config.modality_specific_depth)
        self.blocks_v = blocks(config.modality_specific_depth)
        self.blocks_u = blocks(config.depth - config.modality_specific_depth)
        self.norm_a = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.norm_v = nn.LayerNorm(width, eps=LAYER_NORM_EPS)

    def audio_tokens(self, fbank: torch.Tensor) -> torch.Tensor:
        """Normalised fbanks [n, frames, mel_bins] -> the audio stream's tokens."""
        x = self.patch_embed_a(fbank.unsqueeze(1).transpose(2, 3))
        x = x + self.pos_embed_a + self.modality_a
        for block in self.blocks_a:
            x = block(x)
        for block in self.blocks_u:
            x = block(x, "a")
        return self.norm_a(x)

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels [n, 3, size, size] -> the image stream's tokens."""
        x = self.patch_embed_v(pixels) + self.pos_embed_v + self.modality_v
        for block in self.blocks_v:
            x = block(x)
        for block in self.blocks_u:
            x = block(x, "v")
        return self.norm_v(x)

    def audio_embedding(self, fbank: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio_tokens(fbank).mean(dim=1), dim=-1)

    def image_embedding(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_tokens(pixels).mean(dim=1), dim=-1)


# The state-dict prefixes each tower reads (the shared blocks serve both).
TOWER_PREFIXES = {
    "audio": ("patch_embed_a.", "modality_a", "pos_embed_a", "blocks_a.", "blocks_u.", "norm_a."),
    "image": ("patch_embed_v.", "modality_v", "pos_embed_v", "blocks_v.", "blocks_u.", "norm_v."),
}


def build_cav_mae(config: CavMaeConfig, device: str | torch.device = "cpu") -> CavMaeEncoderModel:
    with torch.device(device):
        return CavMaeEncoderModel(config)
