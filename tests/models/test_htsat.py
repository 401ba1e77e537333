"""HTS-AT: the frontend against NumPy references, the Swin's window rules, the tower's shape."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from xsearch.models import htsat
from xsearch.models.clap_config import clap_config
from xsearch.models.htsat import (
    Htsat,
    SwinBlock,
    dft_kernels,
    hz_to_mel,
    mel_matrix,
    mel_to_hz,
    relative_position_index,
    shifted_window_mask,
    window_token_order,
)


def test_stft_kernels_are_the_dft_of_a_periodic_hann_window():
    n_fft = 64
    real, imag = dft_kernels(n_fft)
    assert real.shape == imag.shape == (33, 1, 64) and real.dtype == np.float32
    frame = np.random.default_rng(0).standard_normal(n_fft)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic: N, not N-1
    want = np.fft.rfft(frame * hann)
    np.testing.assert_allclose(real[:, 0] @ frame, want.real, atol=1e-5)
    np.testing.assert_allclose(imag[:, 0] @ frame, want.imag, atol=1e-5)
    np.testing.assert_allclose(real[0, 0], hann, atol=1e-7)  # bin 0 is the window itself


def test_full_size_kernels_stay_accurate_at_high_bins():
    real, imag = dft_kernels(1024)
    k, n = 511, np.arange(1024)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / 1024)
    np.testing.assert_allclose(real[k, 0], np.cos(2 * np.pi * k * n / 1024) * hann, atol=1e-6)
    np.testing.assert_allclose(imag[k, 0], -np.sin(2 * np.pi * k * n / 1024) * hann, atol=1e-6)


def test_slaney_mel_scale_points():
    # linear below 1 kHz (200/3 Hz per mel), 27 mels per factor 6.4 above
    np.testing.assert_allclose(hz_to_mel(np.array([0.0, 50.0, 1000.0, 6400.0])), [0, 0.75, 15, 42])
    hz = np.array([20.0, 700.0, 1000.0, 5000.0, 14000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz)


def _reference_mel(sr, n_fft, n_mels, fmin, fmax):
    """Triangles between mel-spaced edges, each scaled to unit area in Hz (Slaney), written
    independently with np.interp."""

    def to_mel(f):
        f = np.asarray(f, dtype=float)
        return np.where(f < 1000, 3 * f / 200, 15 + 27 * np.log(f / 1000) / np.log(6.4))

    def to_hz(m):
        return np.where(m < 15, 200 * m / 3, 1000 * 6.4 ** ((m - 15) / 27))

    edges = to_hz(np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    rows = [
        np.interp(freqs, edges[i : i + 3], [0, 1, 0], left=0, right=0)
        * 2
        / (edges[i + 2] - edges[i])
        for i in range(n_mels)
    ]
    return np.array(rows).T


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels"), [(48000, 1024, 64), (32000, 1024, 64), (48000, 1024, 16)]
)
def test_mel_matrix_matches_an_independent_slaney_formula(sr, n_fft, n_mels):
    ours = mel_matrix(sr, n_fft, n_mels, 50, 14000)
    assert ours.shape == (n_fft // 2 + 1, n_mels) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, _reference_mel(sr, n_fft, n_mels, 50, 14000), atol=1e-7)


def test_ms_clap_mel_matrix_is_built_for_32_khz_bins():
    laion = clap_config("laion-clap").audio.htsat
    ms = clap_config("msclap-2023").audio.htsat
    htsat_ms = Htsat(clap_config("msclap-2023-tiny").audio.htsat)
    want = mel_matrix(32000, 1024, 16, 50, 14000)
    np.testing.assert_array_equal(htsat_ms.logmel_extractor.melW.numpy(), want)
    # at 32 kHz the 513 bins stop at 16 kHz, so 14 kHz sits at bin 448, not 298
    last_bin = np.nonzero(mel_matrix(ms.mel_sample_rate, 1024, 64, 50, 14000)[:, -1])[0].max()
    assert last_bin == 447 and ms.mel_sample_rate == 32000 and laion.mel_sample_rate == 48000


def _numpy_log_mel(wave, n_fft, hop, mel):
    half = n_fft // 2
    padded = np.pad(wave, half, mode="reflect")
    frames = np.stack([padded[i : i + n_fft] for i in range(0, len(wave) + 1, hop)])
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    power = np.abs(np.fft.rfft(frames * hann, axis=1)) ** 2
    return 10 * np.log10(np.maximum(power @ mel, 1e-10))


def test_log_mel_frontend_matches_numpy():
    torch.manual_seed(0)
    tower = Htsat(clap_config("laion-clap-tiny").audio.htsat).eval()
    wave = np.random.default_rng(1).standard_normal(9600).astype(np.float32) * 0.1
    with torch.no_grad():
        ours = tower.log_mel(torch.from_numpy(wave)[None])[0, 0].numpy()
    mel = tower.logmel_extractor.melW.numpy().astype(np.float64)
    want = _numpy_log_mel(wave.astype(np.float64), 1024, 480, mel)
    assert ours.shape == want.shape == (21, 16)  # 1 + 9600 // 480 frames
    # fresh bn0: (x - 0) / sqrt(1 + eps)
    np.testing.assert_allclose(ours, want / np.sqrt(1 + 1e-5), atol=2e-3)


def test_silence_sits_at_the_log_floor_without_a_top_db_clamp():
    tower = Htsat(clap_config("laion-clap-tiny").audio.htsat).eval()
    with torch.no_grad():
        silent = tower.log_mel(torch.zeros(1, 4800))
        tone = 0.5 * torch.sin(2 * torch.pi * 1000 * torch.arange(4800) / 48000)
        loud = tower.log_mel(tone[None])
    np.testing.assert_allclose(silent.numpy(), -100 / np.sqrt(1 + 1e-5), rtol=1e-6)
    assert loud.max() - loud.min() > 80  # a top-dB of 80 would have clamped this


def test_fold_stretches_time_then_stacks_slices_into_a_square():
    cfg = clap_config("laion-clap-tiny").audio.htsat  # 16 mel bins, spec 64, ratio 4
    tower = Htsat(cfg)
    frames = 256  # already spec_size * freq_ratio: no interpolation
    mel = torch.arange(frames * 16, dtype=torch.float32).view(1, 1, frames, 16)
    image = tower.fold(mel)
    assert image.shape == (1, 1, 64, 64)
    # slice s of the time axis lands in rows s*16..s*16+15, each row a mel bin over time
    for s in range(4):
        np.testing.assert_array_equal(
            image[0, 0, s * 16 : (s + 1) * 16].numpy(), mel[0, 0, s * 64 : (s + 1) * 64].T.numpy()
        )
    short = tower.fold(torch.randn(1, 1, 201, 16))  # bicubic, corners kept
    assert short.shape == (1, 1, 64, 64)
    with pytest.raises(ValueError, match="exceed"):
        tower.fold(torch.randn(1, 1, 257, 16))


@pytest.mark.parametrize("shift", [0, 2])
def test_window_token_order_is_the_official_roll_then_partition(shift):
    # the official code: torch.roll up and left by the shift, then row-major windows
    grid = torch.arange(64).view(1, 8, 8, 1)
    rolled = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
    official = rolled.view(1, 2, 4, 2, 4, 1).permute(0, 1, 3, 2, 4, 5).reshape(-1)
    order = window_token_order(8, 4, shift)
    assert order.tolist() == official.tolist()
    assert sorted(order.tolist()) == list(range(64))
    np.testing.assert_array_equal(order[:16].reshape(4, 4)[0], [shift * 9 + i for i in range(4)])


def swin_block_as_published(block: SwinBlock, x: torch.Tensor) -> torch.Tensor:
    """The Swin block the official way: roll, cut into windows, attend with the relative
    bias and the shift mask per window, put back, roll back, then the MLP."""
    b, length, c = x.shape
    r, w, s, heads = block.resolution, block.window, block.shift, block.attn.heads
    y = block.norm1(x).view(b, r, r, c)
    if s:
        y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
    windows = y.view(b, r // w, w, r // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)
    count, n, _ = windows.shape
    q, k, v = block.attn.qkv(windows).reshape(count, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    scores = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
    table = block.attn.relative_position_bias_table
    scores = scores + table[block.attn.relative_position_index.view(-1)].view(n, n, -1).permute(
        2, 0, 1
    )
    if block.attn_mask is not None:
        per_clip = block.attn_mask.shape[0]
        scores = scores.view(-1, per_clip, heads, n, n) + block.attn_mask[None, :, None]
    out = (scores.view(count, heads, n, n).softmax(-1) @ v).transpose(1, 2).reshape(count, n, c)
    y = block.attn.proj(out).view(b, r // w, r // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
    y = y.reshape(b, r, r, c)
    if s:
        y = torch.roll(y, shifts=(s, s), dims=(1, 2))
    x = x + y.reshape(b, length, c)
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize("shift", [0, 2])
def test_swin_block_in_pieces_is_the_published_block(monkeypatch, shift):
    # A CPU runs a block over pieces of CPU_PIECE_TOKENS tokens with one gather for the roll
    # and the windows; any piece size (whole clips, windows of one clip, one window) gives
    # the published block's tokens.
    torch.manual_seed(0)
    block = SwinBlock(dim=8, resolution=8, heads=2, window=4, shift=shift, mlp_ratio=2.0).eval()
    with torch.no_grad():  # attention strong enough that a wrong mask or window shows
        for linear in (block.attn.qkv, block.attn.proj):
            linear.weight.normal_(std=0.5)
        block.attn.relative_position_bias_table.normal_(std=1.0)
    x = torch.randn(3, 64, 8)
    with torch.inference_mode():
        want = swin_block_as_published(block, x).numpy()
        for tokens in (1, 16, 32, 64, 128, 10**9):
            monkeypatch.setattr(htsat, "CPU_PIECE_TOKENS", tokens)
            np.testing.assert_allclose(block(x).numpy(), want, atol=1e-5)


def test_relative_position_index_and_shift_mask():
    index = relative_position_index(2)
    # tokens (0,0) (0,1) (1,0) (1,1); offset (dy+1)*3 + (dx+1)
    assert index.tolist() == [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]
    mask = shifted_window_mask(resolution=4, window=2, shift=1)
    assert mask.shape == (4, 4, 4)
    assert (mask[0] == 0).all()  # the top-left window sees one region only
    # the last window mixes four regions: each token sees only itself
    np.testing.assert_array_equal(mask[3], np.where(np.eye(4) == 1, 0.0, -100.0))


def test_windows_shrink_to_small_stages_and_stop_shifting():
    tiny = clap_config("laion-clap-tiny").audio.htsat  # grid 16, window 4
    cfg = dataclasses.replace(tiny, depths=(2, 2, 2, 2))  # odd blocks in every stage
    tower = Htsat(cfg)
    shapes = [[(b.resolution, b.window, b.shift) for b in s.blocks] for s in tower.layers]
    assert shapes == [
        [(16, 4, 0), (16, 4, 2)],
        [(8, 4, 0), (8, 4, 2)],
        [(4, 4, 0), (4, 4, 0)],  # resolution == window: one window, no shift
        [(2, 2, 0), (2, 2, 0)],  # resolution < window: the window shrinks
    ]
    keys = tower.state_dict()
    assert keys["layers.0.blocks.1.attn_mask"].shape == (16, 16, 16)
    assert keys["layers.1.blocks.1.attn_mask"].shape == (4, 16, 16)
    assert "layers.2.blocks.1.attn_mask" not in keys and "layers.0.blocks.0.attn_mask" not in keys
    assert keys["layers.3.blocks.0.attn.relative_position_bias_table"].shape == (9, 2)
    assert keys["layers.3.blocks.0.attn.relative_position_index"].shape == (4, 4)


def test_a_shifted_block_lets_no_token_see_across_the_wrap():
    """Perturbing a token changes, in a shifted block, only tokens of its own masked region:
    (0, 0) sits in the wrapped corner window, (15, 15) in the same window but another region."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(clap_config("laion-clap-tiny").audio.htsat, depths=(2, 2, 2, 2))
    block = Htsat(cfg).layers[0].blocks[1].eval()
    x = torch.randn(1, 256, cfg.width)
    y = x.clone()
    y[0, 0] += torch.randn(cfg.width)  # token (0, 0)
    with torch.no_grad():
        changed = (block(x) - block(y)).abs().amax(-1)[0].view(16, 16)
    assert changed[0, 0] > 0 and changed[0, 1] > 0  # same window and region: (0..1, 0..1)
    assert changed[15, 15] == 0 and changed[0, 15] == 0 and changed[15, 0] == 0
    assert changed[8, 8] == 0  # another window entirely


def test_embedding_is_per_clip_and_tells_clips_apart():
    torch.manual_seed(0)
    cfg = clap_config("msclap-2023-tiny")
    tower = Htsat(cfg.audio.htsat).eval()
    waves = torch.randn(3, cfg.audio.clip_samples) * 0.1
    waves[2] = torch.sin(torch.arange(cfg.audio.clip_samples) * 0.05)
    with torch.no_grad():
        batch = tower(waves)
        single = tower(waves[1:2])
    assert batch.shape == (3, cfg.audio.htsat.num_features) and torch.isfinite(batch).all()
    torch.testing.assert_close(batch[1:2], single, atol=1e-5, rtol=1e-5)
    assert (batch[0] - batch[2]).abs().max() > 1e-3
