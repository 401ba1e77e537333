"""Folding eval-mode BatchNorm layers into the convolutions that feed them.

In eval mode a BatchNorm after a convolution is a per-channel affine map, so it can be
merged into that convolution's weight and bias:

    s = gamma / sqrt(running_var + eps)
    W' = W * s (per output channel)        b' = (b - running_mean) * s + beta

and replaced by `nn.Identity`. The result is the same up to float rounding (the folding
itself is done in float64), and the forward pass saves one full read and write of every
activation per BatchNorm (about a tenth of the audio tower's CPU time).

Only pairs whose forward is known to be `bn(conv(x))` with nothing in between are folded:
consecutive Conv2d -> BatchNorm2d children of an `nn.Sequential` (torchvision's downsample,
open_clip's AvgPool -> Conv -> BN downsample), the `convN`/`bnN` pairs of torchvision's and
open_clip's Bottleneck and ResNet stems (ESResNeXt-fbsp's stem included), and
`conv_point`/`bn` of the audio tower's attention gates.

Folding changes the module tree: the BatchNorm keys disappear from `state_dict()` and the
convolutions gain a `bias`. A folded model therefore no longer loads as an AudioCLIP
checkpoint (and fails loudly rather than silently if one tries); save the unfolded model.
New tensors are made for the folded weights, so tensors shared with a caller's state dict
(`build_model(..., state)` uses them without a copy) are left untouched.
"""

from __future__ import annotations

import itertools

import torch
import torchvision
from open_clip import modified_resnet
from torch import nn

from xsearch.models.audio_tower import AttentionGate

# Modules whose forward applies self.bnN directly to self.convN's output.
_NUMBERED = (
    torchvision.models.resnet.Bottleneck,
    torchvision.models.resnet.ResNet,  # the stem: bn1(conv1(x)); ESResNeXtFBSP subclasses it
    modified_resnet.Bottleneck,
    modified_resnet.ModifiedResNet,  # the 3-convolution stem
)
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
    for module in model.modules():
        names: list[tuple[str, str]] = []
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            names += [(a, b) for (a, _), (b, _) in itertools.pairwise(children)]
        if isinstance(module, _NUMBERED):
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


# --- Convolution + ReLU (+ residual add) as single oneDNN calls on CPU -----------------------

# oneDNN's fused convolutions, as registered for torch.compile's CPU backend (inductor);
# absent from builds without oneDNN, where the Bottlenecks are left as they are.
try:
    _conv_unary = torch.ops.mkldnn._convolution_pointwise.default
    _conv_binary = torch.ops.mkldnn._convolution_pointwise.binary
    HAVE_FUSED_CONV = torch.backends.mkldnn.is_available()
except (AttributeError, RuntimeError):
    HAVE_FUSED_CONV = False


def _fusable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the oneDNN fused kernels apply: float32 CPU inference without autocast."""
    return (
        HAVE_FUSED_CONV
        and x.device.type == "cpu"
        and x.dim() == 4
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not x.is_mkldnn
        and torch.backends.mkldnn.enabled
        and not torch.is_autocast_enabled("cpu")
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    )


def _args(conv: nn.Conv2d) -> tuple[list[int], list[int], list[int], int]:
    return list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups


def conv_relu(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """relu(conv(x)) in one oneDNN call (ReLU as a post-op)."""
    return _conv_unary(x, conv.weight, conv.bias, *_args(conv), "relu", [None], None)


def conv_add_relu(conv: nn.Conv2d, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """relu(conv(x) + residual) in one oneDNN call; `residual` is left unchanged."""
    return _conv_binary(
        x, residual, conv.weight, conv.bias, *_args(conv), "add", 1.0, "relu", [None], None
    )


class FusedTorchvisionBottleneck(torchvision.models.resnet.Bottleneck):
    """A torchvision Bottleneck whose BatchNorms were folded: on CPU in float32 it runs
    conv1+ReLU, conv2+ReLU and conv3+residual+ReLU as three oneDNN calls (no separate
    ReLU or add passes over the activations); elsewhere the stock forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _fusable(x, self.conv1.weight):
            return super().forward(x)
        out = conv_relu(self.conv2, conv_relu(self.conv1, x))
        identity = x if self.downsample is None else self.downsample(x)
        return conv_add_relu(self.conv3, out, identity)


class FusedModifiedResNetBottleneck(modified_resnet.Bottleneck):
    """open_clip's ModifiedResNet Bottleneck, fused like `FusedTorchvisionBottleneck` (its
    anti-aliasing AvgPool stays between conv2 and conv3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _fusable(x, self.conv1.weight):
            return super().forward(x)
        out = self.avgpool(conv_relu(self.conv2, conv_relu(self.conv1, x)))
        identity = x if self.downsample is None else self.downsample(x)
        return conv_add_relu(self.conv3, out, identity)


def _folded_block(block: nn.Module, relus: tuple[str, ...]) -> bool:
    """A Bottleneck whose three BatchNorms are folded away and whose activations are ReLUs."""
    return all(isinstance(getattr(block, f"bn{i}", None), nn.Identity) for i in (1, 2, 3)) and all(
        type(getattr(block, name, None)) is nn.ReLU for name in relus
    )


def fuse_bottlenecks(model: nn.Module) -> int:
    """Switch every BN-folded Bottleneck of `model` (torchvision's in the audio tower,
    open_clip's in the image tower) to its fused subclass, in place; modules and state-dict
    keys stay as they are. Returns how many were switched. Call after `fold_batchnorms`."""
    if not HAVE_FUSED_CONV:
        return 0
    count = 0
    for module in model.modules():
        if type(module) is torchvision.models.resnet.Bottleneck and _folded_block(
            module, ("relu",)
        ):
            module.__class__ = FusedTorchvisionBottleneck
            count += 1
        elif type(module) is modified_resnet.Bottleneck and _folded_block(
            module, ("act1", "act2", "act3")
        ):
            module.__class__ = FusedModifiedResNetBottleneck
            count += 1
    return count
