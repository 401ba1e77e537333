"""The two ResNets AudioCLIP is built from: torchvision's ResNeXt (the audio tower's body) and
CLIP's ModifiedResNet (the image tower), as open_clip defines them.

They are written out here, over torch alone, because importing torchvision or open_clip costs
seconds that a command-line query cannot pay. Their state-dict keys, shapes, initialisation
and outputs equal the libraries' (`tests/models/test_resnets.py`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free convolution that keeps the size (before striding), as both ResNets use."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)


def _on_meta(module: nn.Module) -> bool:
    """Built on the meta device: there are no values to initialise (and torch's meta versions
    of the random initialisers import torch._dynamo, which costs seconds)."""
    return next(module.parameters()).is_meta


# --- torchvision's ResNet / ResNeXt ------------------------------------------------------------


class Bottleneck(nn.Module):
    """torchvision's bottleneck block (ResNet v1.5: the stride is on the 3x3 convolution),
    grouped for ResNeXt: 1x1 -> grouped 3x3 -> 1x1 (x4 channels), plus the shortcut."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        width = int(planes * (width_per_group / 64.0)) * groups
        self.conv1 = _conv(inplanes, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, planes * self.expansion, 1)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class ResNetBody(nn.Module):
    """torchvision's `ResNet` with `Bottleneck` blocks (a ResNeXt when groups > 1): 7x7 stem
    and max pool, four stages, global average pool, linear head."""

    def __init__(
        self,
        layers: Sequence[int],
        num_classes: int = 1000,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        self.groups, self.width_per_group = groups, width_per_group
        e = Bottleneck.expansion
        self.conv1 = _conv(3, 64, 7, stride=2)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._stage(64, 64, layers[0], stride=1)
        self.layer2 = self._stage(64 * e, 128, layers[1], stride=2)
        self.layer3 = self._stage(128 * e, 256, layers[2], stride=2)
        self.layer4 = self._stage(256 * e, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * e, num_classes)
        if not _on_meta(self):
            self._initialise()

    def _initialise(self) -> None:
        """torchvision's initialisation, in its order: the same seed gives the same weights."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stage(self, inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or inplanes != out:
            downsample = nn.Sequential(_conv(inplanes, out, 1, stride), nn.BatchNorm2d(out))
        g, w = self.groups, self.width_per_group
        first = Bottleneck(inplanes, planes, stride, downsample, g, w)
        rest = [Bottleneck(out, planes, 1, None, g, w) for _ in range(1, blocks)]
        return nn.Sequential(first, *rest)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# --- CLIP's ModifiedResNet (open_clip) ---------------------------------------------------------


class ClipBottleneck(nn.Module):
    """CLIP's bottleneck: every convolution has stride 1 and a stride becomes an average pool
    (anti-aliasing), after the 3x3 convolution and before the shortcut's 1x1 convolution."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = _conv(inplanes, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = _conv(planes, out, 1)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride > 1 or inplanes != out:
            # "-1", "0", "1": the official checkpoint's key names
            self.downsample = nn.Sequential(
                OrderedDict(
                    [("-1", nn.AvgPool2d(stride)), ("0", _conv(inplanes, out, 1)),
                     ("1", nn.BatchNorm2d(out))]
                )
            )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.avgpool(self.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class AttentionPool2d(nn.Module):
    """Multi-head attention pooling: the mean of the feature map, added as a first token (with
    learned positions), attends to every position; its output is the embedding."""

    def __init__(self, spacial_dim: int, embed_dim: int, num_heads: int, output_dim: int) -> None:
        super().__init__()
        # in place: on the meta device an out-of-place division imports torch._dynamo (seconds)
        positions = torch.randn(spacial_dim**2 + 1, embed_dim).div_(embed_dim**0.5)
        self.positional_embedding = nn.Parameter(positions)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.num_heads = num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)  # [n, c, h, w] -> [n, hw, c]
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        tokens = tokens + self.positional_embedding.to(tokens.dtype)
        n, _, c = tokens.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # [n, len, c] -> [n, heads, len, c/heads]
            return t.unflatten(-1, (self.num_heads, c // self.num_heads)).transpose(1, 2)

        # Only the first token's output is kept, so only its query is computed.
        query = heads(self.q_proj(tokens[:, :1]))
        out = F.scaled_dot_product_attention(
            query, heads(self.k_proj(tokens)), heads(self.v_proj(tokens))
        )
        return self.c_proj(out.reshape(n, c))


class ModifiedResNet(nn.Module):
    """CLIP's image ResNet: a 3-convolution stem with an average pool, anti-aliased
    `ClipBottleneck` stages, and an attention pool instead of the average pool and head.
    Images [n, 3, image_size, image_size] -> embeddings [n, output_dim]."""

    def __init__(
        self,
        layers: Sequence[int],
        output_dim: int,
        heads: int,
        image_size: int = 224,
        width: int = 64,
    ) -> None:
        super().__init__()
        self.output_dim, self.image_size = output_dim, image_size
        e = ClipBottleneck.expansion
        self.conv1 = _conv(3, width // 2, 3, stride=2)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = _conv(width // 2, width // 2, 3)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = _conv(width // 2, width, 3)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        self.layer1 = _clip_stage(width, width, layers[0], stride=1)
        self.layer2 = _clip_stage(width * e, width * 2, layers[1], stride=2)
        self.layer3 = _clip_stage(width * 2 * e, width * 4, layers[2], stride=2)
        self.layer4 = _clip_stage(width * 4 * e, width * 8, layers[3], stride=2)
        self.attnpool = AttentionPool2d(image_size // 32, width * 32, heads, output_dim)
        if not _on_meta(self):
            self._initialise()

    def _initialise(self) -> None:
        """open_clip's initialisation, in its order: the same seed gives the same weights."""
        std = self.attnpool.c_proj.in_features**-0.5
        for proj in ("q_proj", "k_proj", "v_proj", "c_proj"):
            nn.init.normal_(getattr(self.attnpool, proj).weight, std=std)
        for name, param in self.named_parameters():
            if name.startswith("layer") and name.endswith("bn3.weight"):
                nn.init.zeros_(param)  # each residual branch starts as the identity

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.conv3(x)))
        return self.avgpool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.attnpool(x)


def _clip_stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    out = planes * ClipBottleneck.expansion
    first = ClipBottleneck(inplanes, planes, stride)
    return nn.Sequential(first, *(ClipBottleneck(out, planes) for _ in range(1, blocks)))
