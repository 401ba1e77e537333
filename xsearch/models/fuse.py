"""Folding eval-mode BatchNorm layers into the convolutions that feed them.

In eval mode a BatchNorm after a convolution is a per-channel affine map, so it can be
merged into that convolution's weight and bias:

    s = gamma / sqrt(running_var + eps)
    W' = W * s (per output channel)        b' = (b - running_mean) * s + beta

and replaced by `nn.Identity`. The result is the same up to float rounding (the folding
itself is done in float64), and the forward pass saves one full read and write of every
activation per BatchNorm (about a tenth of the audio tower's CPU time).

Only pairs whose forward is known to be `bn(conv(x))` with nothing in between are folded:
consecutive Conv2d -> BatchNorm2d children of an `nn.Sequential` (the ResNeXt downsample,
CLIP's AvgPool -> Conv -> BN downsample), the `convN`/`bnN` pairs of the bottlenecks and
ResNet stems of `resnets.py` (ESResNeXt-fbsp's stem included) and of the torchvision and
open_clip classes they mirror, and `conv_point`/`bn` of the audio tower's attention gates.

Folding changes the module tree: the BatchNorm keys disappear from `state_dict()` and the
convolutions gain a `bias`. A folded model therefore no longer loads as an AudioCLIP
checkpoint (and fails loudly rather than silently if one tries); save the unfolded model.
New tensors are made for the folded weights, so tensors shared with a caller's state dict
(`build_model(..., state)` uses them without a copy) are left untouched.
"""

from __future__ import annotations

import itertools
import sys

import torch
from torch import nn

from xsearch.models import resnets
from xsearch.models.audio_tower import AttentionGate


def _numbered() -> tuple[type[nn.Module], ...]:
    """Modules whose forward applies self.bnN directly to self.convN's output. torchvision's
    and open_clip's are included once imported (a model cannot hold them before): importing
    either costs seconds that a model built from `resnets.py` alone need not pay."""
    types: tuple[type[nn.Module], ...] = (
        resnets.Bottleneck,
        resnets.ResNetBody,  # the stem: bn1(conv1(x)); ESResNeXtFBSP is one
        resnets.ClipBottleneck,
        resnets.ModifiedResNet,  # the 3-conv stem
    )
    if "torchvision.models.resnet" in sys.modules:
        from torchvision.models import resnet

        types += (resnet.Bottleneck, resnet.ResNet)
    if "open_clip.modified_resnet" in sys.modules:
        from open_clip import modified_resnet

        types += (modified_resnet.Bottleneck, modified_resnet.ModifiedResNet)
    return types


_NAMED_PAIRS: tuple[tuple[type[nn.Module], tuple[tuple[str, str], ...]], ...] = (
    (AttentionGate, (("conv_point", "bn"),)),
)


def _foldable(conv: object, bn: object) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and type(bn) is nn.BatchNorm2d
        and not bn.training
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.running_var is not None
        and conv.out_channels == bn.num_features
    )


def conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv name, bn name) for every BatchNorm that can be folded into its conv."""
    pairs = []
    numbered = _numbered()
    for module in model.modules():
        names: list[tuple[str, str]] = []
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            names += [(a, b) for (a, _), (b, _) in itertools.pairwise(children)]
        if isinstance(module, numbered):
            names += [(f"conv{i}", f"bn{i}") for i in (1, 2, 3)]
        for cls, named in _NAMED_PAIRS:
            if isinstance(module, cls):
                names += list(named)
        for conv_name, bn_name in names:
            conv = getattr(module, conv_name, None)
            bn = getattr(module, bn_name, None)
            if _foldable(conv, bn):
                pairs.append((module, conv_name, bn_name))
    return pairs


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Merge eval-mode `bn` into `conv` (new weight and bias tensors, computed in float64)."""
    dtype, device = conv.weight.dtype, conv.weight.device
    if device.type == "meta":  # no values, only the new structure (a module to load into);
        # and torch's meta arithmetic would import torch._dynamo, which costs seconds
        conv.weight.requires_grad_(False)
        conv.bias = nn.Parameter(torch.empty(conv.out_channels, device=device, dtype=dtype), False)
        return
    assert bn.running_mean is not None and bn.running_var is not None  # see _foldable
    mean = bn.running_mean.double()
    scale = (bn.running_var.double() + bn.eps).rsqrt()
    shift = torch.zeros_like(mean)
    if bn.affine:
        scale = scale * bn.weight.double()
        shift = bn.bias.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    weight = conv.weight.double() * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    conv.weight = nn.Parameter(weight.to(device, dtype), requires_grad=False)
    conv.bias = nn.Parameter(((bias - mean) * scale + shift).to(device, dtype), requires_grad=False)


def fold_batchnorms(model: nn.Module) -> int:
    """Fold every foldable eval-mode BatchNorm of `model` into its convolution and replace
    it by `nn.Identity`, in place. Returns how many were folded. `model` must be in eval
    mode (training-mode BatchNorms use batch statistics and are left alone)."""
    pairs = conv_bn_pairs(model)
    for parent, conv_name, bn_name in pairs:
        fold_conv_bn(getattr(parent, conv_name), getattr(parent, bn_name))
        setattr(parent, bn_name, nn.Identity())
    return len(pairs)
