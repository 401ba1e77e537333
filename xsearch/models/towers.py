"""AudioCLIP's towers as separate torch modules, to and from the arrays the cache keeps.

`derive_towers` folds a built model's BatchNorms and splits its weights by tower;
`image_tower`, `audio_tower` and `text_model` rebuild one tower from those arrays without
copying them (the convolution weights were stored channels-last, the layout the CPU kernels
want, so they become channels-last tensors as they are).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from xsearch.models.config import ModelConfig
from xsearch.models.fuse import fold_batchnorms
from xsearch.models.inference import cache_frontend_matrices
from xsearch.models.resnets import ModifiedResNet
from xsearch.models.tower_cache import TOWERS, Tower, tower_of

if TYPE_CHECKING:  # AudioCLIP imports open_clip, which only the text tower on a GPU needs
    from xsearch.models.audioclip import AudioCLIP


def derive_towers(model: AudioCLIP) -> dict[str, Tower]:
    """The towers of `model` (changed in place: its BatchNorms are folded) as float32 arrays."""
    model = model.eval().requires_grad_(False)
    fold_batchnorms(model)
    towers: dict[str, dict[str, np.ndarray]] = {name: {} for name in TOWERS}
    nhwc: dict[str, set[str]] = {name: set() for name in TOWERS}
    for key, value in model.state_dict().items():
        tower = tower_of(key)
        if tower is None:
            continue
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        if value.dim() == 4:
            value = value.permute(0, 2, 3, 1)
            nhwc[tower].add(key)
        towers[tower][key] = value.contiguous().numpy()
    return {name: Tower(towers[name], frozenset(nhwc[name])) for name in TOWERS}


def _tensors(tower: Tower, prefix: str) -> dict[str, torch.Tensor]:
    """The tower's tensors (views of its arrays), keys without `prefix`."""
    out = {}
    for key, array in tower.arrays.items():
        tensor = torch.from_numpy(array)
        if key in tower.nhwc:
            tensor = tensor.permute(0, 3, 1, 2)  # a channels-last view: no copy
        out[key.removeprefix(prefix)] = tensor
    return out


def _assign(module: nn.Module, tensors: dict[str, torch.Tensor], device: torch.device):
    """`module` (built on the meta device, BatchNorms folded away) holding `tensors`."""
    module.load_state_dict(tensors, strict=True, assign=True)
    module = module.eval().requires_grad_(False)
    return module.to(device).to(memory_format=torch.channels_last)


def _folded(module: nn.Module) -> nn.Module:
    """`module`'s structure after BatchNorm folding (on the meta device: no data is touched)."""
    fold_batchnorms(module.eval())
    return module


def image_resnet(cfg: ModelConfig) -> ModifiedResNet:
    """The image tower of `cfg`, built as open_clip's CLIP builds `visual` for a ResNet."""
    v = cfg.vision
    heads = v.width * 32 // v.head_width  # the attention pool's channels over head_width
    return ModifiedResNet(v.layers, cfg.embed_dim, heads, v.image_size, v.width)


def image_tower(cfg: ModelConfig, tower: Tower, device: torch.device) -> nn.Module:
    with torch.device("meta"):
        visual = _folded(image_resnet(cfg))
    return _assign(visual, _tensors(tower, "visual."), device)


def audio_tower(cfg: ModelConfig, tower: Tower, device: torch.device) -> nn.Module:
    from xsearch.models.audio_tower import ESResNeXtFBSP

    with torch.device("meta"):
        audio = _folded(ESResNeXtFBSP(cfg.audio, cfg.embed_dim))
    audio = _assign(audio, _tensors(tower, "audio."), device)
    cache_frontend_matrices(audio)
    return audio


def text_model(cfg: ModelConfig, tower: Tower, device: torch.device) -> AudioCLIP:
    """An AudioCLIP whose text tower is loaded (the others stay empty, on the meta device):
    for `encode_text` on a GPU; on a CPU the NumPy text tower is used instead."""
    from xsearch.models.audioclip import AudioCLIP

    with torch.device("meta"):
        model = AudioCLIP(cfg).eval().requires_grad_(False)
    tensors = _tensors(tower, "")
    missing = set(model.state_dict()) - set(tensors)
    if any(tower_of(k) == "text" for k in missing):
        raise ValueError(f"text tower incomplete: {sorted(missing)[:3]}")
    model.load_state_dict(tensors, strict=False, assign=True)
    for name in ("token_embedding", "transformer", "ln_final"):
        getattr(model, name).to(device)
    model.positional_embedding = nn.Parameter(model.positional_embedding.to(device), False)
    model.text_projection = nn.Parameter(model.text_projection.to(device), False)
    return model
