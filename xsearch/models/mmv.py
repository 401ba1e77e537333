"""MMV (Alayrac et al., NeurIPS 2020, "Self-Supervised MultiModal Versatile Networks"): the models
of its three checkpoints (S3D-G, TSM-ResNet-50 and TSM-ResNet-50 x2), as the official JAX/Haiku
release computes them at inference.

Three towers and the "fac_relu" heads:
- video, S3D-G: on space-to-depth clips. A clip [T, H, W, 3] in [0, 1] (no other
  normalisation) becomes [T/2, H/2, W/2, 24] (channel dt*12 + dh*6 + dw*3 + c), then a (2, 4, 4)
  convolution, max-pools, separable (1, k, k) + (k, 1, 1) convolutions, self-gating (a sigmoid
  of a linear map of the mean over T, H, W scales each channel) and Inception blocks; the mean
  over T, H, W is the 1024-d representation;
- video, TSM-ResNet-50 (x1, x2: twice as wide): the clip's frames, in [0, 1], through a
  pre-activation ResNet-50 whose blocks shift an eighth of their channels one frame forward
  and an eighth one frame back (moving them to the other end of the channel axis, as the
  official code does); the mean over H, W, then over T: 2048-d (4096-d for x2);
- audio: a pre-activation ResNet-50 over the log-mel spectrogram seen as a one-channel picture
  (height: frames, width: mel bins), the mean over both after a last BN and ReLU: 2048-d;
- text: an embedding table, a per-token linear map and ReLU, the maximum over every token
  (padding included: there is no mask), 2048-d;
- heads: video -> va is Linear, BN, ReLU, Linear (no bias), BN; va -> vat is ReLU, Linear, BN,
  and audio's vat comes from its own va through that same module (the same weights and
  statistics); audio -> va and text -> vat are single Linear maps. Nothing is L2-normalised.

Every convolution and max-pool pads as TensorFlow's 'SAME' does: the output has ceil(n / stride)
positions and the padding, when odd, puts its extra element at the end (max-pools pad with
-inf). Batch norm uses the EMA `average`s of the checkpoint's state with eps 1e-5:
y = (x - mean) * scale / sqrt(var + eps) + offset.

The architecture is read from the config's "towers" block, so that a tiny model of the same
code can be tested quickly; `xsearch.models.mmv_params` converts the official parameter trees.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xsearch.models.mmv_params import (  # noqa: F401  (MmvConfig, mmv_config: public here too)
    FAMILY,
    INCEPTION_BRANCHES,
    RESNET_STRIDES,
    S3D_CONV2C,
    S3D_ORDER,
    S3D_POOLS,
    S3D_STEM,
    SPACE_TO_DEPTH,
    MmvConfig,
    inception_output,
    inception_widths,
    mmv_config,
)

# ---------------------------------------------------------------------------------------------
# TF 'SAME' padding


def same_pads(sizes: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> list:
    """F.pad's list (last axis first) for TF 'SAME': ceil(n / s) outputs, extra pad at the end."""
    pads: list[int] = []
    for n, k, s in reversed(list(zip(sizes, kernel, stride))):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return pads


class SameConv(nn.Module):
    """A convolution (2-D or 3-D, channels first) with TF 'SAME' padding; bias-free as in
    the checkpoint, until `fold_batch_norms` gives it the following BatchNorm's shift."""

    def __init__(
        self, cin: int, cout: int, kernel: tuple[int, ...], stride: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.weight = nn.Parameter(torch.empty(cout, cin, *kernel))
        self.bias: nn.Parameter | None = None
        nn.init.kaiming_normal_(self.weight)
        self._conv = F.conv3d if len(kernel) == 3 else F.conv2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, padding = _same_padded(x, self.kernel, self.stride, 0.0)
        return self._conv(x, self.weight, self.bias, stride=self.stride, padding=padding)


def _same_padded(
    x: torch.Tensor, window: tuple[int, ...], stride: tuple[int, ...], value: float
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(`x`, the padding the operation itself applies): TF 'SAME' padding, left to the
    convolution or pool when it is the same on both sides (no copy), else added with
    `value` (the extra at the end) and none left."""
    pads = same_pads(tuple(x.shape[2:]), window, stride)
    if pads[0::2] == pads[1::2]:
        return x, tuple(reversed(pads[0::2]))
    return F.pad(x, pads, value=value), (0,) * len(window)


class SameMaxPool(nn.Module):
    """A max-pool (2-D or 3-D, channels first) with TF 'SAME' padding by -inf. A 3-D pool
    runs as a 2-D pool of each frame, then one over time, on channels-last views: the same
    maxima (a maximum is exact in any order), several times faster on a CPU than PyTorch's
    3-D pool, whose CPU kernel also computes indices."""

    def __init__(self, window: tuple[int, ...], stride: tuple[int, ...]) -> None:
        super().__init__()
        self.window, self.stride = tuple(window), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, padding = _same_padded(x, self.window, self.stride, -math.inf)
        if len(self.window) == 2:
            return F.max_pool2d(x, self.window, self.stride, padding)
        (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = self.window, self.stride, padding
        x = x.contiguous(memory_format=torch.channels_last_3d)  # [B, C, T, H, W] as B,T,H,W,C
        b, c, t, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)  # a channels-last view
        frames = F.max_pool2d(frames, (kh, kw), (sh, sw), (ph, pw))
        h, w = frames.shape[2:]
        x = frames.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        if (kt, st, pt) != (1, 1, 0):
            over_time = F.max_pool2d(x.reshape(b, c, t, h * w), (kt, 1), (st, 1), (pt, 0))
            x = over_time.reshape(b, c, -1, h, w)
        return x


class BatchNorm(nn.Module):
    """Haiku's BatchNorm at inference: the EMA averages, over the channel axis `axis`."""

    def __init__(self, channels: int, eps: float, axis: int = 1) -> None:
        super().__init__()
        self.eps, self.axis = eps, axis
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.dim()
        shape[self.axis] = -1
        scale, shift = self.affine()
        return x * scale.view(shape) + shift.view(shape)

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) such that the output is x * scale + shift."""
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return scale, self.bias - self.running_mean * scale


def fold_into(conv: SameConv, bn: BatchNorm) -> None:
    """Make `conv` give what `bn(conv(x))` gives (inference): one pass less over the
    activations, the same values up to float32 rounding."""
    scale, shift = bn.affine()
    with torch.no_grad():
        weight = conv.weight * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
        bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.weight = nn.Parameter(weight, requires_grad=False)
    conv.bias = nn.Parameter(bias, requires_grad=False)


# ---------------------------------------------------------------------------------------------
# S3D-G


class Unit3d(nn.Module):
    """Conv (no bias) -> BN -> ReLU, twice when separable ((1, k, k) then (k, 1, 1)), then
    the optional self-gating."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: tuple[int, int, int],
        separable: bool,
        gating: bool,
        eps: float,
    ) -> None:
        super().__init__()
        if separable and kernel[1] != 1:
            shapes = [(1, kernel[1], kernel[2]), (kernel[0], 1, 1)]
        else:
            shapes = [kernel]
        self.convs = nn.ModuleList(
            SameConv(cin if i == 0 else cout, cout, shape, (1, 1, 1))
            for i, shape in enumerate(shapes)
        )
        self.bns = nn.ModuleList(BatchNorm(cout, eps) for _ in shapes)
        self.gate = nn.Linear(cout, cout) if gating else None

    def fold_batch_norms(self) -> None:
        for conv, bn in zip(self.convs, self.bns):
            fold_into(conv, bn)
        self.bns = nn.ModuleList(nn.Identity() for _ in self.bns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in zip(self.convs, self.bns):
            x = F.relu(bn(conv(x)), inplace=True)
        if self.gate is not None:
            weights = torch.sigmoid(self.gate(x.mean(dim=(2, 3, 4))))
            x = x * weights[:, :, None, None, None]
        return x


class Inception3d(nn.Module):
    def __init__(self, cin: int, widths: tuple[int, ...], temporal: int, eps: float) -> None:
        super().__init__()
        units = {}
        for name, index, separable in INCEPTION_BRANCHES:
            source = widths[index - 1] if name.endswith("0b_3x3") else cin
            kernel = (temporal, 3, 3) if separable else (1, 1, 1)
            gating = not name.endswith("_0a_1x1") or name.startswith("Branch_0")
            units[name] = Unit3d(source, widths[index], kernel, separable, gating, eps)
        self.units = nn.ModuleDict(units)
        self.pool = SameMaxPool((3, 3, 3), (1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.units
        b0 = u["Branch_0_Conv2d_0a_1x1"](x)
        b1 = u["Branch_1_Conv2d_0b_3x3"](u["Branch_1_Conv2d_0a_1x1"](x))
        b2 = u["Branch_2_Conv2d_0b_3x3"](u["Branch_2_Conv2d_0a_1x1"](x))
        b3 = u["Branch_3_Conv2d_0b_1x1"](self.pool(x))
        return torch.cat((b0, b1, b2, b3), dim=1)


class S3D(nn.Module):
    """S3D-G from the space-to-depth input on: [B, 24, T/2, H/2, W/2] -> [B, 1024]."""

    def __init__(self, config: MmvConfig) -> None:
        super().__init__()
        eps, w = config.bn_eps, config.width
        stem = w(S3D_STEM)
        layers: dict[str, nn.Module] = {}
        channels = 3 * SPACE_TO_DEPTH**3
        for name in S3D_ORDER:
            if name in S3D_POOLS:
                layers[name] = SameMaxPool(*S3D_POOLS[name])
            elif name == "Conv2d_1a_7x7":
                layers[name] = Unit3d(channels, stem, (2, 4, 4), False, False, eps)
                channels = stem
            elif name == "Conv2d_2b_1x1":
                layers[name] = Unit3d(channels, stem, (1, 1, 1), False, False, eps)
            elif name == "Conv2d_2c_3x3":  # temporal kernels and gating start here
                layers[name] = Unit3d(channels, w(S3D_CONV2C), (3, 3, 3), True, True, eps)
                channels = w(S3D_CONV2C)
            else:
                widths = inception_widths(config, name)
                layers[name] = Inception3d(channels, widths, 3, eps)
                channels = inception_output(widths)
        self.layers = nn.ModuleDict(layers)

    def forward(self, x: torch.Tensor, final_endpoint: str | None = None) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last_3d)  # oneDNN's and the pools' own
        for name, layer in self.layers.items():
            x = layer(x)
            if name == final_endpoint:
                return x
        return x.mean(dim=(2, 3, 4))


def space_to_depth(clips: torch.Tensor) -> torch.Tensor:
    """[B, T, H, W, C] -> [B, 8C, T/2, H/2, W/2], channel dt*4C + dh*2C + dw*C + c."""
    b, t, h, w, c = clips.shape
    f = SPACE_TO_DEPTH
    x = clips.reshape(b, t // f, f, h // f, f, w // f, f, c)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, t // f, h // f, w // f, f**3 * c)
    return x.permute(0, 4, 1, 2, 3).contiguous()


# ---------------------------------------------------------------------------------------------
# Audio: ResNet-50 v2


def temporal_shift(x: torch.Tensor, frames: int, fraction: float) -> torch.Tensor:
    """TSM's shift as the official code does it, on [B * T, C, H, W] (frames of a clip
    adjacent): with n = int(C * fraction), output channels [0, n) take input channels
    [C - n, C) of frame t + 1, channels [n, C - n) stay, channels [C - n, C) take input
    channels [0, n) of frame t - 1; zeros past the clip's ends."""
    channels = x.shape[1]
    n = int(channels * fraction)
    if n == 0:
        return x
    clip = x.reshape(-1, frames, *x.shape[1:])
    backward = F.pad(clip[:, 1:, channels - n :], (0, 0, 0, 0, 0, 0, 0, 1))
    forward = F.pad(clip[:, :-1, :n], (0, 0, 0, 0, 0, 0, 1, 0))
    shifted = torch.cat((backward, clip[:, :, n : channels - n], forward), dim=2)
    return shifted.reshape(x.shape)


class Bottleneck(nn.Module):
    """Pre-activation bottleneck: (BN, ReLU, conv) x 3 (1x1, 3x3 with the stride, 1x1) plus
    the input, or a 1x1 strided projection of the first pre-activation. With `shift`, TSM's:
    the residual branch sees the first pre-activation temporally shifted."""

    def __init__(
        self, cin: int, channels: int, stride: int, project: bool, eps: float, shift: float = 0.0
    ) -> None:
        super().__init__()
        inner = channels // 4
        self.shift = shift
        self.bns = nn.ModuleList(BatchNorm(c, eps) for c in (cin, inner, inner))
        self.convs = nn.ModuleList(
            [
                SameConv(cin, inner, (1, 1), (1, 1)),
                SameConv(inner, inner, (3, 3), (stride, stride)),
                SameConv(inner, channels, (1, 1), (1, 1)),
            ]
        )
        self.shortcut = SameConv(cin, channels, (1, 1), (stride, stride)) if project else None

    def fold_batch_norms(self) -> None:
        """The BatchNorms after the first two convolutions go into them (the first one,
        before any convolution, stays)."""
        for i in (1, 2):
            fold_into(self.convs[i - 1], self.bns[i])  # type: ignore[arg-type]
        self.bns = nn.ModuleList([self.bns[0], nn.Identity(), nn.Identity()])

    def forward(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        shortcut, net = x, x
        for i, (bn, conv) in enumerate(zip(self.bns, self.convs)):
            net = F.relu(bn(net))
            if i == 0 and self.shortcut is not None:
                shortcut = self.shortcut(net)
            if i == 0 and self.shift:
                net = temporal_shift(net, frames, self.shift)
            net = conv(net)
        return net + shortcut


class ResNetV2(nn.Module):
    """A pre-activation bottleneck ResNet, [N, C, H, W] -> [N, widths[-1]]: 7x7/2 conv (no BN),
    3x3/2 max-pool, the groups (strides 1, 2, 2, 2), BN, ReLU, mean over H and W. The audio
    tower projects the shortcut when the width changes; TSM's (`shift` > 0) in every
    group's first block, and shifts."""

    def __init__(
        self,
        cin: int,
        stem: int,
        widths: tuple[int, ...],
        blocks: tuple[int, ...],
        eps: float,
        shift: float = 0.0,
    ) -> None:
        super().__init__()
        self.stem = SameConv(cin, stem, (7, 7), (2, 2))
        self.pool = SameMaxPool((3, 3), (2, 2))
        groups, cin = [], stem
        for channels, count, stride in zip(widths, blocks, RESNET_STRIDES):
            group = []
            for index in range(count):
                project = index == 0 and (shift > 0 or channels != cin)
                stride_here = stride if index == 0 else 1
                group.append(Bottleneck(cin, channels, stride_here, project, eps, shift))
                cin = channels
            groups.append(nn.ModuleList(group))
        self.groups = nn.ModuleList(groups)
        self.final_bn = BatchNorm(cin, eps)

    def forward(
        self, x: torch.Tensor, frames: int = 1, final_endpoint: str | None = None
    ) -> torch.Tensor:
        """`final_endpoint` (TSM's names): "stem" (after the pool), "unit_0" ... "unit_3",
        "last_conv" (after the last BN and ReLU); None: the pooled output."""
        x = self.pool(self.stem(x.contiguous(memory_format=torch.channels_last)))
        if final_endpoint == "stem":
            return x
        for number, group in enumerate(self.groups):
            for block in group:
                x = block(x, frames)
            if final_endpoint == f"unit_{number}":
                return x
        x = F.relu(self.final_bn(x))
        return x if final_endpoint == "last_conv" else x.mean(dim=(2, 3))


def audio_resnet(config: MmvConfig) -> ResNetV2:
    """[B, 1, frames, mel] -> [B, 2048]."""
    c = config
    return ResNetV2(1, c.audio_stem_width, c.audio_widths, c.audio_blocks, c.bn_eps)


class TsmResNet(ResNetV2):
    """TSM-ResNet-50 v2: clips [B, T, H, W, 3] in [0, 1] as B * T frames, temporal shifts
    in every block, the mean over H, W then over T -> [B, widths[-1]]."""

    def __init__(self, config: MmvConfig) -> None:
        c = config
        super().__init__(
            3, c.video_stem_width, c.video_widths, c.video_blocks, c.bn_eps, c.video_shift_fraction
        )

    def clips(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        frames = clips.reshape(b * t, *clips.shape[2:]).permute(0, 3, 1, 2)
        return self(frames, t).reshape(b, t, -1).mean(dim=1)


# ---------------------------------------------------------------------------------------------
# Text and heads


class TextTower(nn.Module):
    """Word ids [B, N] -> [B, sentence_dim]: embedding, per-token Linear + ReLU, max over N."""

    def __init__(self, config: MmvConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.word_dim)
        self.conv = nn.Linear(config.word_dim, config.sentence_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(self.embed(ids))).amax(dim=1)


class Heads(nn.Module):
    def __init__(self, config: MmvConfig) -> None:
        super().__init__()
        eps, va, vat = config.bn_eps, config.va_width, config.vat_width
        # video -> va ("vid2audio_embd": mlp@inner, BN after the projection)
        self.video_va_inner = nn.Linear(config.video_dim, config.video_va_inner)
        self.video_va_inner_bn = BatchNorm(config.video_va_inner, eps)
        self.video_va = nn.Linear(config.video_va_inner, va, bias=False)
        self.video_va_bn = BatchNorm(va, eps)
        # va -> vat ("vis_embd"), shared by video and audio
        self.va_vat = nn.Linear(va, vat)
        self.va_vat_bn = BatchNorm(vat, eps)
        self.audio_va = nn.Linear(config.audio_dim, va)  # "audio_embd"
        self.text_vat = nn.Linear(config.sentence_dim, vat)  # "txt_embd"
        self.text_va = nn.Linear(config.sentence_dim, va)  # "txt2audio_embd"

    def video(self, representation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.video_va_inner_bn(self.video_va_inner(representation)))
        va = self.video_va_bn(self.video_va(x))
        return va, self.to_vat(va)

    def to_vat(self, va: torch.Tensor) -> torch.Tensor:
        return self.va_vat_bn(self.va_vat(F.relu(va)))

    def audio(self, representation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        va = self.audio_va(representation)
        return va, self.to_vat(va)


class MmvModel(nn.Module):
    """The three towers and their heads; all outputs unnormalised, as the official ones."""

    def __init__(self, config: MmvConfig) -> None:
        super().__init__()
        self.config = config
        self.video = S3D(config) if config.is_s3d else TsmResNet(config)
        self.audio = audio_resnet(config)
        self.text = TextTower(config)
        self.heads = Heads(config)

    # representations (the official vid_repr, aud_repr and the text tower's output)
    def video_representation(self, clips: torch.Tensor) -> torch.Tensor:
        """Clips [B, T, H, W, 3] in [0, 1] (for S3D T, H and W even) -> [B, video_dim]."""
        if clips.dim() != 5 or clips.shape[-1] != 3:
            raise ValueError(f"clips must be [B, T, H, W, 3], got {tuple(clips.shape)}")
        if not self.config.is_s3d:
            return self.video.clips(clips)
        if any(n % SPACE_TO_DEPTH for n in clips.shape[1:4]):
            raise ValueError(f"clip T, H and W must be even, got {tuple(clips.shape[1:4])}")
        return self.video(space_to_depth(clips))

    def audio_representation(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel spectrograms [B, frames, mel_bins] -> [B, audio_dim]."""
        if log_mel.dim() != 3:
            raise ValueError(f"log_mel must be [B, frames, mel_bins], got {tuple(log_mel.shape)}")
        return self.audio(log_mel.unsqueeze(1))

    def text_representation(self, ids: torch.Tensor) -> torch.Tensor:
        """Word ids [B, N] (the official input pads to N = 16; pads count) -> [B, sentence_dim]."""
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ValueError(f"ids must be [B, N] with N >= 1, got {tuple(ids.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(f"word ids must lie in [0, {self.config.vocab_size})")
        return self.text(ids)

    # embeddings
    def video_embeddings(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips [B, T, H, W, 3] in [0, 1] -> (va [B, va_width], vat [B, vat_width])."""
        return self.heads.video(self.video_representation(clips))

    def audio_embeddings(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel [B, frames, mel_bins] -> (va [B, va_width], vat [B, vat_width])."""
        return self.heads.audio(self.audio_representation(log_mel))

    def text_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        """Word ids [B, N] -> vat [B, vat_width]."""
        return self.heads.text_vat(self.text_representation(ids))

    def text_va_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        """Word ids [B, N] -> the official text-to-audio output [B, va_width] (not a
        retrieval space of the paper's; kept because the checkpoint has it)."""
        return self.heads.text_va(self.text_representation(ids))


def prepare_for_inference(model: MmvModel) -> MmvModel:
    """`model`, for inference: every BatchNorm that follows a convolution folded into it
    (S3D's units, the bottlenecks' inner ones) and the convolutions' weights channels-last,
    as the activations are: the same outputs up to float32 rounding
    (tests/models/test_mmv_fidelity.py), fewer passes over the activations and no layout
    conversions. Its state dict is no longer the checkpoint's: prepare after loading."""
    for module in model.modules():
        if isinstance(module, Unit3d | Bottleneck):
            module.fold_batch_norms()
    for module in model.modules():
        if isinstance(module, SameConv):
            layout = torch.channels_last_3d if module.weight.dim() == 5 else torch.channels_last
            module.weight.data = module.weight.data.contiguous(memory_format=layout)
    return model


def build_mmv(config: MmvConfig, device: str | torch.device = "cpu") -> MmvModel:
    """The model with random weights, in eval mode, float32, on `device`."""
    with torch.device(device):
        model = MmvModel(config)
    return model.eval().float()
