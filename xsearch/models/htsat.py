"""HTS-AT, the audio tower of LAION-CLAP and Microsoft CLAP: a Swin Transformer over a log-mel
spectrogram folded into a square image.

Module and parameter names follow the official implementation (`spectrogram_extractor.stft`,
`logmel_extractor.melW`, `bn0`, `patch_embed`, `layers.N.blocks.M`, `norm`, `tscam_conv`,
`head`), so its checkpoints load strictly, buffers included: the relative position index of
every block and the shifted-window attention mask are stored in the official files. The
token-semantic head (`tscam_conv`, `head`) classifies AudioSet events; the embedding the CLAP
models use is the mean of the final tokens, so the head is kept for loading only.

Frontend (the official torchlibrosa one, as tensors): a centred STFT with reflect padding as a
strided convolution with the stored DFT-times-window kernels, the power spectrum, a matrix
product with the stored mel filters, 10*log10(max(x, 1e-10)) without a top-dB floor, then a
BatchNorm over the mel bins. Random weights start from the real DFT basis of a periodic Hann
window and the Slaney mel filters, so even an untrained tower sees a sensible spectrogram.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import nn

from xsearch.models.clap_config import HtsatConfig

AMIN = 1e-10  # floor of the mel power before the log, as the official frontend
# On a CPU a Swin block runs over pieces of about this many tokens, so that each piece's
# activations (queries, scores, the MLP's hidden layer) stay in the cache between the
# operations that read them: the first stage of a batch of 8 clips is 32,768 tokens, and run
# whole its thin matrix products reached half the speed of the same products in pieces.
CPU_PIECE_TOKENS = 2048


# --- frontend ------------------------------------------------------------------------------------


def dft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """The real and imaginary STFT kernels, each [n_fft // 2 + 1, 1, n_fft] float32: the real
    DFT basis times a periodic Hann window, what torchlibrosa stores."""
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic ("fftbins") Hann
    angle = 2 * np.pi * (np.outer(k, n) % n_fft) / n_fft  # reduced first: exact for large k*n
    real = np.cos(angle) * window
    imag = -np.sin(angle) * window
    return real[:, None, :].astype(np.float32), imag[:, None, :].astype(np.float32)


def hz_to_mel(hz: ArrayLike) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    log_step = np.log(6.4) / 27.0
    above = hz >= 1000.0
    return np.where(above, 15.0 + np.log(np.maximum(hz, 1e-300) / 1000.0) / log_step, mel)


def mel_to_hz(mel: ArrayLike) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), mel * (200.0 / 3))


def mel_matrix(sample_rate: float, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-normalised triangular mel filters, [n_fft // 2 + 1, n_mels] float32: librosa's
    `filters.mel(sr, n_fft, n_mels, fmin, fmax)` (htk=False, norm="slaney"), transposed as
    torchlibrosa stores it. `sample_rate` sets the FFT bins' frequencies, which need not be the
    audio's rate (MS CLAP builds it for 32 kHz and runs it on 44.1 kHz audio)."""
    bin_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - bin_hz[None, :]
    weights = np.zeros((n_mels, n_fft // 2 + 1), dtype=np.float32)
    for i in range(n_mels):
        rising = -ramps[i] / widths[i]
        falling = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, None]  # equal area
    return np.ascontiguousarray(weights.T)


class Stft(nn.Module):
    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        bins = n_fft // 2 + 1
        self.conv_real = nn.Conv1d(1, bins, n_fft, stride=hop_length, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, n_fft, stride=hop_length, bias=False)
        real, imag = dft_kernels(n_fft)
        with torch.no_grad():
            self.conv_real.weight.copy_(torch.from_numpy(real))
            self.conv_imag.weight.copy_(torch.from_numpy(imag))
        self.requires_grad_(False)  # frozen in the official model too

    def forward(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T] -> real and imaginary parts, each [B, frames, bins] (1 + T // hop frames).

        The strided convolutions are run as one matrix product of the signal's frames with
        both kernels: the same sums, about twice as fast on a CPU as two 1-channel convs."""
        half = self.n_fft // 2
        x = F.pad(waves[:, None, :], (half, half), mode="reflect")[:, 0]
        frames = x.unfold(-1, self.n_fft, self.hop_length)  # [B, frames, n_fft], a view
        kernels = torch.cat([self.conv_real.weight[:, 0], self.conv_imag.weight[:, 0]])
        both = frames @ kernels.T  # [B, frames, 2 * bins]
        return both.chunk(2, dim=-1)


class Spectrogram(nn.Module):
    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.stft = Stft(n_fft, hop_length)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """[B, T] -> power spectrogram [B, 1, frames, bins]."""
        real, imag = self.stft(waves)
        return (real**2 + imag**2)[:, None]


class LogMel(nn.Module):
    def __init__(self, mel_filters: np.ndarray) -> None:
        super().__init__()
        # `melW`: the official name, [bins, mel]
        self.melW = nn.Parameter(torch.empty(mel_filters.shape), requires_grad=False)
        with torch.no_grad():
            self.melW.copy_(torch.from_numpy(mel_filters))

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        """[..., bins] power -> [..., mel] decibels, floored at 10*log10(AMIN), no top-dB."""
        return 10.0 * torch.log10(torch.clamp(power @ self.melW, min=AMIN))


# --- Swin ----------------------------------------------------------------------------------------


def _trunc_normal(tensor: torch.Tensor, std: float = 0.02) -> None:
    if tensor.is_meta:  # a checkpoint will supply it; torch's meta init is slow to load
        return
    nn.init.trunc_normal_(tensor, std=std, a=-2.0, b=2.0)


@functools.lru_cache(maxsize=64)
def window_token_order(resolution: int, window: int, shift: int) -> np.ndarray:
    """Where each window token comes from: the row-major tokens of a [resolution, resolution]
    grid, cyclically shifted up and left by `shift` and cut into row-major windows of
    window x window tokens, as one gather index [resolution^2] (the official roll, then
    window partition; scattering back through it undoes both)."""
    grid = np.arange(resolution * resolution).reshape(resolution, resolution)
    grid = np.roll(grid, (-shift, -shift), axis=(0, 1))
    per_side = resolution // window
    order = grid.reshape(per_side, window, per_side, window).transpose(0, 2, 1, 3).reshape(-1)
    return order


def relative_position_index(window: int) -> np.ndarray:
    """[window^2, window^2] index into the (2 * window - 1)^2 table of relative offsets.
    (NumPy: these buffers are also made when a model is built on the meta device, where
    torch's arithmetic is slow the first time.)"""
    rows, cols = np.meshgrid(np.arange(window), np.arange(window), indexing="ij")
    coords = np.stack([rows.ravel(), cols.ravel()])  # [2, window^2]
    relative = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return (relative[0] * (2 * window - 1) + relative[1]).astype(np.int64)


def shifted_window_mask(resolution: int, window: int, shift: int) -> np.ndarray:
    """[windows, window^2, window^2] float32: 0 between tokens of the same region of the
    cyclically shifted image, -100 between tokens that only the shift made neighbours."""
    regions = np.zeros((resolution, resolution), dtype=np.float32)
    spans = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for label, (rows, cols) in enumerate((r, c) for r in spans for c in spans):
        regions[rows, cols] = label
    per_window = resolution // window
    labels = regions.reshape(per_window, window, per_window, window).transpose(0, 2, 1, 3)
    labels = labels.reshape(-1, window * window)  # [windows, window^2], row-major windows
    differ = labels[:, None, :] - labels[:, :, None]
    return np.where(differ != 0, -100.0, 0.0).astype(np.float32)


class WindowAttention(nn.Module):
    relative_position_index: torch.Tensor

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.window, self.heads = window, heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer(
            "relative_position_index", torch.tensor(relative_position_index(window))
        )
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        _trunc_normal(self.relative_position_bias_table)

    def position_bias(self, mask: torch.Tensor | None) -> torch.Tensor:
        """The additive attention bias: [heads, N, N], or [windows, heads, N, N] with the
        shifted-window `mask` ([windows, N, N]) added."""
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, -1).permute(2, 0, 1)  # [heads, N, N]
        return bias if mask is None else bias[None] + mask[:, None]

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x: [B, windows, N, C]; bias: from `position_bias`, for these windows."""
        b, w, n, c = x.shape
        heads, d = self.heads, c // self.heads
        qkv = self.qkv(x).view(b * w, n, 3, heads, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * w * heads, n, d).unbind(0)
        # Written out rather than F.scaled_dot_product_attention, which with a float mask on
        # a CPU runs its math path after checking the mask for -inf; one baddbmm scales and
        # adds the bias as it multiplies.
        bias = bias.to(q.dtype).expand(b, w, heads, n, n).reshape(b * w * heads, n, n)
        scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=d**-0.5)
        out = torch.bmm(scores.softmax(dim=-1), v).view(b, w, heads, n, d)
        return self.proj(out.transpose(2, 3).reshape(b, w, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """A Swin block at a fixed resolution; odd blocks shift their windows by half a window.
    At a resolution no larger than the window, the window shrinks to the resolution and does
    not shift (the official rule), so one window covers the whole stage."""

    attn_mask: torch.Tensor | None

    def __init__(
        self, dim: int, resolution: int, heads: int, window: int, shift: int, mlp_ratio: float
    ) -> None:
        super().__init__()
        if resolution <= window:
            window, shift = resolution, 0
        self.resolution, self.window, self.shift = resolution, window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if shift > 0:
            # persistent: the official checkpoints store it
            mask = torch.tensor(shifted_window_mask(resolution, window, shift))
            self.register_buffer("attn_mask", mask)
        else:
            self.attn_mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        n = self.window * self.window
        piece = CPU_PIECE_TOKENS if x.device.type == "cpu" else None
        order = torch.from_numpy(window_token_order(self.resolution, self.window, self.shift))
        order = order.to(x.device)
        windows = self.norm1(x).index_select(1, order).view(b, -1, n, c)
        bias = self.attn.position_bias(self.attn_mask)
        attended = torch.empty_like(windows)
        for clips, part in _pieces(b, windows.shape[1], n, piece):
            part_bias = bias if bias.dim() == 3 else bias[part]
            attended[clips, part] = self.attn(windows[clips, part], part_bias)
        # x + the attention, each window token added back at its place in one pass
        h = x.index_add(1, order, attended.view(b, length, c)).view(-1, c)
        if torch.is_grad_enabled():  # out= takes no part in autograd: one piece, no in-place
            return (h + self.mlp(self.norm2(h))).view(b, length, c)
        out = torch.empty_like(h)
        step = piece or len(h)
        for start in range(0, len(h), step):
            rows = h[start : start + step]
            torch.add(rows, self.mlp(self.norm2(rows)), out=out[start : start + step])
        return out.view(b, length, c)


def _pieces(clips: int, windows: int, n: int, tokens: int | None) -> Iterator[tuple[slice, slice]]:
    """(clip slice, window slice) pieces of a [clips, windows, n, C] tensor, each of about
    `tokens` tokens (whole clips where a clip is smaller), or the whole tensor when None."""
    if tokens is None or clips * windows * n <= tokens:
        yield slice(None), slice(None)
    elif windows * n <= tokens:
        group = tokens // (windows * n)
        for start in range(0, clips, group):
            yield slice(start, start + group), slice(None)
    else:
        step = max(1, tokens // n)
        while windows % step:  # whole pieces, so that every one has the same shape
            step -= 1
        for clip in range(clips):
            for start in range(0, windows, step):
                yield slice(clip, clip + 1), slice(start, start + step)


class PatchMerging(nn.Module):
    """Halves the resolution: each 2x2 group of tokens -> one token of twice the channels."""

    def __init__(self, resolution: int, dim: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        r = self.resolution
        x = x.view(b, r, r, c)
        parts = (x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2])
        x = torch.cat(parts, -1).view(b, -1, 4 * c)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    def __init__(
        self,
        dim: int,
        resolution: int,
        depth: int,
        heads: int,
        window: int,
        mlp_ratio: float,
        downsample: bool,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio)
            for i in range(depth)
        )
        self.downsample = PatchMerging(resolution, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 1, S, S] -> [B, (S / patch)^2, dim] tokens, row-major."""
        return self.norm(self.proj(image).flatten(2).transpose(1, 2))


# --- the tower -----------------------------------------------------------------------------------


class Htsat(nn.Module):
    """Waveforms [B, clip_samples] at the model's rate -> embeddings [B, num_features]."""

    def __init__(self, config: HtsatConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.spectrogram_extractor = Spectrogram(c.n_fft, c.hop_length)
        self.logmel_extractor = LogMel(
            mel_matrix(c.mel_sample_rate, c.n_fft, c.mel_bins, c.fmin, c.fmax)
        )
        self.bn0 = nn.BatchNorm2d(c.mel_bins)
        self.patch_embed = PatchEmbed(c.patch_size, c.width)
        grid = c.spec_size // c.patch_size
        stages = len(c.depths)
        self.layers = nn.ModuleList(
            SwinStage(
                dim=c.width * 2**i,
                resolution=grid // 2**i,
                depth=c.depths[i],
                heads=c.heads[i],
                window=c.window_size,
                mlp_ratio=c.mlp_ratio,
                downsample=i < stages - 1,
            )
            for i in range(stages)
        )
        self.norm = nn.LayerNorm(c.num_features)
        # The token-semantic head spans the frequency rows one fold leaves; a tiny config
        # may leave less than one, so at least one.
        rows = max(1, c.spec_size // 2 ** (stages - 1) // c.patch_size // c.freq_ratio)
        self.tscam_conv = nn.Conv2d(
            c.num_features, c.classes, kernel_size=(rows, 3), padding=(0, 1)
        )
        self.head = nn.Linear(c.classes, c.classes)
        self.apply(_init_weights)

    def log_mel(self, waves: torch.Tensor) -> torch.Tensor:
        """[B, T] -> normalised log-mel [B, 1, frames, mel_bins], in float32 even under
        autocast: a half-precision STFT and log would lose the quiet bins."""
        with torch.autocast(waves.device.type, enabled=False):
            x = self.logmel_extractor(self.spectrogram_extractor(waves.float()))
            return self.bn0(x.transpose(1, 3)).transpose(1, 3)

    def fold(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, 1, frames, mel_bins] -> the square image [B, 1, spec_size, spec_size]: frames
        stretched (bicubic, corners aligned) to spec_size * freq_ratio, then the time axis cut
        into freq_ratio slices stacked along frequency."""
        c = self.config
        frames, bins = mel.shape[2], mel.shape[3]
        target_t, target_f = c.spec_size * c.freq_ratio, c.spec_size // c.freq_ratio
        if frames > target_t or bins > target_f:
            raise ValueError(
                f"{frames} frames x {bins} mel bins exceed the model's {target_t} x {target_f}"
            )
        if frames < target_t:
            mel = F.interpolate(mel, (target_t, bins), mode="bicubic", align_corners=True)
        if bins < target_f:
            mel = F.interpolate(mel, (mel.shape[2], target_f), mode="bicubic", align_corners=True)
        b, f, t = mel.shape[0], mel.shape[3], mel.shape[2]
        x = mel.permute(0, 1, 3, 2).reshape(b, 1, f, c.freq_ratio, t // c.freq_ratio)
        return x.permute(0, 1, 3, 2, 4).reshape(b, 1, c.freq_ratio * f, t // c.freq_ratio)

    def tokens(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 1, S, S] -> the final normalised tokens [B, N, num_features]."""
        x = self.patch_embed(image)
        for stage in self.layers:
            x = stage(x)
        return self.norm(x)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """The official `latent_output`: the mean of the final tokens."""
        return self.tokens(self.fold(self.log_mel(waves))).mean(dim=1)


def _init_weights(module: nn.Module) -> None:
    if getattr(module, "weight", None) is not None and module.weight.is_meta:
        return
    if isinstance(module, nn.Linear):
        _trunc_normal(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
