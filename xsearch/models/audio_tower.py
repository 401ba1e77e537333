"""ESResNeXt-fbsp: AudioCLIP's audio tower, checkpoint-compatible with the official release.

torchvision's ResNeXt body (as `resnets.ResNetBody`; its modules give the official key names)
with five attention blocks that gate each stage's output by a map computed from that stage's
input, on top of the learned frontend in `audio_frontend.py`. Its state dict keys are the
official ones.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from xsearch.models.audio_frontend import FrequencyBSpline, blackman_harris, log_power_bands
from xsearch.models.config import AudioConfig
from xsearch.models.resnets import Bottleneck, ResNetBody


class AttentionGate(nn.Module):
    """Depthwise conv -> pointwise conv -> BN -> sigmoid over a max-pooled copy of the input."""

    def __init__(self, in_ch: int, out_ch: int, kernel: tuple[int, int]) -> None:
        super().__init__()
        padding = (kernel[0] // 2, kernel[1] // 2)
        self.conv_depth = nn.Conv2d(in_ch, in_ch, kernel, padding=padding, groups=in_ch)
        self.conv_point = nn.Conv2d(in_ch, out_ch, 1)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        x = F.adaptive_max_pool2d(x, size)
        return torch.sigmoid(self.bn(self.conv_point(self.conv_depth(x))))


class ESResNeXtFBSP(ResNetBody):
    """Waveform [batch, samples] (44.1 kHz, int16 scale) -> embedding [batch, embed_dim]."""

    window: torch.Tensor  # a buffer: the analysis window

    def __init__(self, cfg: AudioConfig, embed_dim: int) -> None:
        super().__init__(
            cfg.layers,
            num_classes=embed_dim,
            groups=cfg.groups,
            width_per_group=cfg.width_per_group,
        )
        self.n_fft, self.hop_length = cfg.n_fft, cfg.hop_length
        # The frontend's few fixed values are computed on the CPU, then moved: on the meta device
        # (a model built to load weights into) torch's arithmetic imports torch._dynamo (seconds).
        device = torch.get_default_device()
        with torch.device("cpu"):
            fbsp, window = FrequencyBSpline(cfg.n_bins), blackman_harris(cfg.win_length)
        self.fbsp = fbsp.to(device)
        self.register_buffer("window", window.to(device))
        c = [64, *(planes * Bottleneck.expansion for planes in (64, 128, 256, 512))]
        # kernel shapes alternate between frequency-wise (3, 1) and time-wise (1, 5)
        self.att1 = AttentionGate(c[0], c[1], (3, 1))
        self.att2 = AttentionGate(c[1], c[2], (1, 5))
        self.att3 = AttentionGate(c[2], c[3], (3, 1))
        self.att4 = AttentionGate(c[3], c[4], (1, 5))
        self.att5 = AttentionGate(c[4], c[4], (3, 5))

    def features(self, spec: torch.Tensor) -> torch.Tensor:
        """Log-power bands [batch, 3, h, w] -> pooled features [batch, 2048]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(spec))))
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        gates = (self.att1, self.att2, self.att3, self.att4)
        for stage, gate in zip(stages, gates):
            y = stage(x)
            x = y * gate(x, y.shape[-2:])
        pooled = self.avgpool(x)
        return torch.flatten(pooled * self.att5(x, pooled.shape[-2:]), 1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = log_power_bands(wave, self.fbsp, self.window, self.n_fft, self.hop_length)
        return self.fc(self.features(spec.contiguous(memory_format=torch.channels_last)))
