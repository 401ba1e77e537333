"""A seeded CAV-MAE checkpoint and fixed inputs for golden tests.

`tests/data/golden_cav_mae.npz` holds what the official code (YuanGongND/cav-mae, `CAVMAE(
modality_specific_depth=11)`, its `forward_feat` as `src/retrieval.py` uses it, and its
dataloader's `_wav2fbank` and image transform) computes from `make_checkpoint()` and
`make_inputs()`; `tests/models/test_cav_mae_fidelity.py` checks that xsearch reproduces it. The
real weights cannot be fetched in tests, so the checkpoint is built from the committed key list
(`tests/data/cav_mae_scalepp_state_dict.tsv`, dumped from the official model), never from the
model's init code.

Recipe: every tensor is drawn from a generator seeded by (seed, key): linear layers
N(0, 1/fan_in) with the query and key rows of `qkv` ATTENTION_GAIN times larger (near-uniform
random attention would make every token alike), the patch convolutions He-normal, LayerNorm
weights 1 + 0.1 N and biases 0.1 N, other biases 0.02 N, the modality tokens and the mask token
0.02 N. The positional embeddings are the official fixed 2-D sine-cosine tables (the audio one
8 x 64 patches, the image one 14 x 14), computed here as `pos_embed.py` computes them.

Inputs: waveforms at 16 kHz (seeded tones and noise: shorter than, exactly and longer than
the 1024 frames a clip takes, and a stereo one), the speech clips of `tests/data/clap_audio/`
(files: resampled to 16 kHz by soxr "HQ" before the official fbank, as the official data
preparation's FFmpeg conversion would), seeded fbank arrays and image tensors for the towers
alone, and seeded pictures of several sizes and aspect ratios for the image transform.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parents[1] / "data"
KEY_LIST = DATA / "cav_mae_scalepp_state_dict.tsv"
AUDIO_DIR = DATA / "clap_audio"
RECIPE_VERSION = 1  # bump when the checkpoint or the inputs change
ATTENTION_GAIN = 3.0
SAMPLE_RATE = 16_000

CLIPS = [
    "speech_44k_1s.wav",
    "speech_44k_5s.flac",
    "speech_48k_7s.flac",
    "speech_16k_4s.wav",
    "speech_22k_10s.flac",
    "speech_44k_stereo_3s.flac",  # stereo: the mean of both channels removed, then the first
    "speech_44k_silence.flac",
]


def _gen(seed: int, key: str) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))


def _normal(g: torch.Generator, shape: tuple[int, ...], std: float, mean: float = 0.0):
    return torch.randn(shape, generator=g) * std + mean


def read_key_list() -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Key -> (shape, dtype) of the official checkpoint, as the tsv lists it."""
    out = {}
    for line in KEY_LIST.read_text(encoding="utf-8").splitlines()[1:]:
        key, shape, dtype = line.split("\t")
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        out[key] = (dims, getattr(torch, dtype))
    return out


def sincos_2d(dim: int, rows: int, columns: int) -> np.ndarray:
    """The official fixed positional table [rows * columns, dim] (MAE's `pos_embed.py`): half
    the channels encode the column, half the row, each as sin | cos of 1/10000^(2i/(dim/2))."""

    def one_axis(half: int, positions: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(half // 2, dtype=np.float64) / (half / 2.0))
        out = np.einsum("m,d->md", positions.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    # np.meshgrid(w, h) with w first: grid[0] runs along the columns
    grid_w, grid_h = np.meshgrid(
        np.arange(columns, dtype=np.float32), np.arange(rows, dtype=np.float32)
    )
    return np.concatenate([one_axis(dim // 2, grid_w), one_axis(dim // 2, grid_h)], axis=1)


def _tensor(key: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = _gen(seed, key)
    name = key.rsplit(".", 1)[-1]
    owner = key.rsplit(".", 1)[0]
    if name.startswith("pos_embed") or name.startswith("decoder_pos_embed"):
        patches, dim = shape[1], shape[2]
        rows = 8 if name.endswith("_a") else math.isqrt(patches)
        table = sincos_2d(dim, rows, patches // rows)
        return torch.from_numpy(table).float().unsqueeze(0)
    if len(shape) == 3:  # modality and mask tokens
        return _normal(g, shape, 0.02)
    if "norm" in owner.rsplit(".", 1)[-1] or owner.endswith("norm"):
        return _normal(g, shape, 0.1, 1.0 if name == "weight" else 0.0)
    if name == "bias":
        return _normal(g, shape, 0.02)
    if len(shape) == 4:  # patch embeddings: He-normal over the fan-in
        return _normal(g, shape, math.sqrt(2.0 / math.prod(shape[1:])))
    if len(shape) == 2:
        weight = _normal(g, shape, 1.0 / math.sqrt(shape[1]))
        if key.endswith("qkv.weight"):  # rows q | k | v
            weight[: 2 * shape[0] // 3] *= ATTENTION_GAIN
        return weight
    raise ValueError(f"no recipe for {key} {shape}")


def make_checkpoint(seed: int = 0) -> dict[str, torch.Tensor]:
    """The seeded state dict, keys as the official file names them (`module.` prefix)."""
    return {
        key: _tensor(key, shape, seed).to(dtype) for key, (shape, dtype) in read_key_list().items()
    }


def fingerprint(state: dict[str, torch.Tensor]) -> tuple[str, np.ndarray]:
    """Keys (newline-joined, sorted) and [n, 2] float64 (sum, L2 norm) of every tensor."""
    keys = sorted(state)
    values = [state[k].detach().double() for k in keys]
    stats = np.array([[float(v.sum()), float(v.norm())] for v in values], dtype=np.float64)
    return "\n".join(keys), stats


def _tone_and_noise(rng: np.random.Generator, n: int, channels: int = 1) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    rows = []
    for _ in range(channels):
        freq = rng.uniform(200, 3000)
        wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(n) + 0.02
        rows.append(wave * np.linspace(0.2, 1.0, n))
    return np.stack(rows).astype(np.float32)  # [channels, samples], a small DC offset included


def make_inputs(seed: int = 0) -> dict:
    """The fixed inputs of the golden file (see the module doc)."""
    rng = np.random.default_rng(seed)
    waves = [
        _tone_and_noise(rng, 3 * SAMPLE_RATE),  # padded to 1024 frames
        _tone_and_noise(rng, 400 + 1023 * 160),  # 1024 frames exactly (25 ms every 10 ms)
        _tone_and_noise(rng, 12 * SAMPLE_RATE),  # cut to 1024 frames
        _tone_and_noise(rng, 4 * SAMPLE_RATE, channels=2),
    ]
    fbanks = rng.standard_normal((2, 1024, 128)).astype(np.float32)  # normalised already
    pixels = rng.standard_normal((2, 3, 224, 224)).astype(np.float32)  # normalised already
    pictures = [
        rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for h, w in ((224, 224), (480, 640), (300, 200), (97, 411))
    ]
    return {
        "waves": waves,
        "clips": [AUDIO_DIR / c for c in CLIPS],
        "fbanks": fbanks,
        "pixels": pixels,
        "pictures": pictures,
    }
