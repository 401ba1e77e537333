"""Seeded LAION-CLAP and Microsoft CLAP 2023 checkpoints and fixed inputs for golden tests.

`tests/data/golden_laion_clap.npz` and `tests/data/golden_msclap_2023.npz` hold the official
packages' embeddings (laion_clap 1.1.7, msclap 1.3.4) of `make_inputs()` and of the clips in
`tests/data/clap_audio/` under `make_checkpoint(family)`; `test_clap_fidelity.py` checks that
xsearch reproduces them. The real weights cannot be fetched in tests, so the checkpoint is built
from the committed key lists (`tests/data/*_state_dict.tsv`, dumped from the official models),
never from a model's init code: it does not change when torch or transformers change how they
initialise layers.

Recipe: every tensor is drawn from a generator seeded by (seed, key) at a scale typical of its
layer: linear layers N(0, 1/fan_in) (GPT-2's Conv1D stores them transposed: fan-in is its first
dimension) with attention queries and keys ATTENTION_GAIN times larger, convolutions
He-normal, LayerNorm weights 1 + 0.1 N and biases 0.1 N, other biases 0.02 N, embeddings and
relative position bias tables 0.02 N. What the official code computes rather than learns is
exact: Swin's `relative_position_index` and shifted-window `attn_mask`, the STFT kernels (the
real and imaginary DFT basis times a periodic Hann window, as torchlibrosa builds them), the
Slaney mel matrix (librosa's default; LAION's at 48 kHz, MS CLAP's built for 32 kHz and applied
to 44.1 kHz audio, as the official HTS-AT config does), RoBERTa's `position_ids`. `bn0` gets
running statistics in the range of the log-mel dB values it normalises, and both logit scales
log(1 / 0.07). With these scales distinct inputs give clearly distinct vectors, which the tests
check, so a cosine test cannot pass by collapse.
"""

from __future__ import annotations

import math
import re
import zlib
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parents[1] / "data"
AUDIO_DIR = DATA / "clap_audio"
RECIPE_VERSION = 1  # bump when the checkpoint or the inputs change

FAMILIES = {
    # family: (key list, container key, prefix, mel sample rate, full config name)
    "laion-clap": ("laion_clap_state_dict.tsv", "state_dict", "module.", 48000, "laion-clap"),
    "msclap": ("msclap_2023_state_dict.tsv", "model", "", 32000, "msclap-2023"),
}
MEL_FMIN, MEL_FMAX = 50.0, 14000.0
# bn0 normalises log-mel dB values (10 log10 of the mel power of [-1, 1] audio, floor -100 dB).
# Measured on the clips of tests/data/clap_audio: speech bins lie around -45 dB with a
# spread of ~20 dB; the running statistics are drawn around that.
BN0_MEAN, BN0_MEAN_SPREAD = -45.0, 8.0
BN0_STD, BN0_STD_SPREAD = 20.0, 4.0
# Query and key weights are drawn this many times larger than other linear layers. At the
# plain 1/sqrt(fan_in) scale the random attention is near uniform: a token's features converge
# on its neighbours' through the layers (tokens of one clip end at cosine 0.95), and pooled
# audio embeddings of different speech clips at cosine 0.99, text ones at 0.985. Peaked
# attention, as trained models have, keeps them apart: 0.91 and 0.86 (LAION).
ATTENTION_GAIN = 3.0


def _gen(seed: int, key: str) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))


def _normal(g: torch.Generator, shape: tuple[int, ...], std: float, mean: float = 0.0):
    return torch.randn(shape, generator=g) * std + mean


def read_key_list(family: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Key -> (shape, dtype) of the official checkpoint of `family`, as the tsv lists it."""
    out = {}
    lines = (DATA / FAMILIES[family][0]).read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:  # the first line describes the container
        key, shape, dtype = line.split("\t")
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        out[key] = (dims, getattr(torch, dtype))
    return out


def _config_keys(family: str, config: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Keys of a smaller config of the same architecture, from xsearch's model (named as
    the official checkpoint names them)."""
    from xsearch.models.clap_checkpoint import expected_state
    from xsearch.models.clap_config import clap_config

    prefix = FAMILIES[family][2]
    keys = {prefix + k: v for k, v in expected_state(clap_config(config)).items()}
    if family == "laion-clap":  # the real files carry it; xsearch drops it on loading
        width = keys["module.text_branch.embeddings.position_embeddings.weight"][0][0]
        keys["module.text_branch.embeddings.position_ids"] = ((1, width), torch.int64)
    return keys


def stft_kernels(n_fft: int, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torchlibrosa's conv_real / conv_imag weights [bins, 1, n_fft]: the DFT basis
    exp(-2 pi i k n / N) times a periodic Hann window, real and imaginary parts."""
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    phase = 2 * np.pi * (np.outer(np.arange(bins), n) % n_fft) / n_fft  # k n mod N: exact
    real = np.cos(phase) * window
    imag = -np.sin(phase) * window
    as_kernel = lambda m: torch.from_numpy(m[:, None, :].astype(np.float32))  # noqa: E731
    return as_kernel(real), as_kernel(imag)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, log above."""
    f = np.asarray(f, dtype=np.float64)
    mel = f / (200.0 / 3)
    log = f >= 1000.0
    return np.where(log, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27), mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    hz = m * (200.0 / 3)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27) * (m - 15.0)), hz)


def mel_matrix(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax) (Slaney scale and area
    normalisation), transposed as torchlibrosa stores it: [n_fft // 2 + 1, n_mels]."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    gaps = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / gaps[:-1, None]
    upper = ramps[2:] / gaps[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.T.astype(np.float32)


def relative_position_index(window: int) -> torch.Tensor:
    """Swin's index [w*w, w*w] into the (2w-1)^2 relative position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    flat = coords.flatten(1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def shifted_window_mask(windows: int, window: int) -> torch.Tensor:
    """Swin's attention mask [windows, w*w, w*w] for a block whose windows are shifted by
    w // 2 over a square map of `windows` windows: 0 within a region, -100 across regions."""
    side = math.isqrt(windows) * window
    shift = window // 2
    regions = torch.zeros(side, side)
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for n, (rows, cols) in enumerate((r, c) for r in bounds for c in bounds):
        regions[rows, cols] = n
    grid = regions.reshape(side // window, window, side // window, window).transpose(1, 2)
    flat = grid.reshape(-1, window * window)
    differs = (flat[:, None, :] - flat[:, :, None]) != 0
    return torch.where(differs, -100.0, 0.0)


_NORM_OWNER = re.compile(r"(^|\.)(norm\d?|LayerNorm|ln_\d|ln_f|layer_norm)$")
_GPT2_CONV1D = re.compile(r"\.(c_attn|c_proj|c_fc)\.weight$")
_QUERY_KEY = re.compile(r"(attention\.self\.(query|key)\.weight|attn\.(qkv|c_attn)\.weight)$")
_EMBEDDING = re.compile(r"(embeddings\.\w+_embeddings|\.wte|\.wpe)\.weight$")


def _tensor(family: str, key: str, shape: tuple[int, ...], dtype: torch.dtype, seed: int):
    """One state-dict entry of the recipe in the module doc."""
    g = _gen(seed, key)
    owner, _, name = key.rpartition(".")
    if key.endswith("stft.conv_real.weight") or key.endswith("stft.conv_imag.weight"):
        real, imag = stft_kernels(shape[2], shape[0])
        return real if "conv_real" in key else imag
    if key.endswith("logmel_extractor.melW"):
        n_fft = 2 * (shape[0] - 1)
        rate = FAMILIES[family][3]
        return torch.from_numpy(mel_matrix(rate, n_fft, shape[1], MEL_FMIN, MEL_FMAX))
    if key.endswith("position_ids"):
        return torch.arange(shape[-1], dtype=dtype).reshape(shape)
    if key.endswith(".attn_mask"):
        return shifted_window_mask(shape[0], math.isqrt(shape[1]))
    if key.endswith("relative_position_index"):
        return relative_position_index(math.isqrt(shape[0])).to(dtype)
    if name == "num_batches_tracked":
        return torch.zeros(shape, dtype=dtype)
    if key.rsplit(".", 1)[-1].startswith("logit_scale"):
        return torch.full(shape, math.log(1 / 0.07))
    if owner.endswith("bn0"):
        if name == "running_mean":
            return _normal(g, shape, BN0_MEAN_SPREAD, BN0_MEAN)
        if name == "running_var":
            return (BN0_STD + BN0_STD_SPREAD * torch.randn(shape, generator=g).abs()) ** 2
        return _normal(g, shape, 0.1, 1.0 if name == "weight" else 0.0)
    if _NORM_OWNER.search(owner):
        return _normal(g, shape, 0.1, 1.0 if name == "weight" else 0.0)
    if _EMBEDDING.search(key) or key.endswith("relative_position_bias_table"):
        return _normal(g, shape, 0.02)
    if name == "bias":
        return _normal(g, shape, 0.02)
    if len(shape) == 4:  # convolutions: He-normal over the fan-in
        return _normal(g, shape, math.sqrt(2.0 / math.prod(shape[1:])))
    if _GPT2_CONV1D.search(key):  # GPT-2's Conv1D: weight [in, out]
        weight = _normal(g, shape, 1.0 / math.sqrt(shape[0]))
    elif len(shape) == 2:  # linear layers: weight [out, in]
        weight = _normal(g, shape, 1.0 / math.sqrt(shape[1]))
    else:
        raise ValueError(f"no recipe for {key} {shape}")
    if _QUERY_KEY.search(key):
        _sharpen(key, weight)
    return weight


def _sharpen(key: str, weight: torch.Tensor) -> None:
    """Scale the query and key parts of an attention weight by ATTENTION_GAIN, in place."""
    if key.endswith("c_attn.weight"):  # GPT-2: [in, 3 * width], columns q | k | v
        weight[:, : 2 * weight.shape[1] // 3] *= ATTENTION_GAIN
    elif key.endswith("qkv.weight"):  # Swin: [3 * width, in], rows q | k | v
        weight[: 2 * weight.shape[0] // 3] *= ATTENTION_GAIN
    else:  # RoBERTa's separate query and key layers
        weight *= ATTENTION_GAIN


def make_checkpoint(family: str, seed: int = 0, config: str = "full") -> dict[str, torch.Tensor]:
    """The seeded state dict of `family` ("laion-clap" or "msclap"), keys as the official
    checkpoint names them (LAION's with the `module.` prefix). `config` "full" is the real
    architecture (the tsv key list); another name is one of xsearch's configs of the family."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    keys = read_key_list(family) if config == "full" else _config_keys(family, config)
    return {
        key: _tensor(family, key, shape, dtype, seed).to(dtype)
        for key, (shape, dtype) in keys.items()
    }


def container(family: str, state: dict[str, torch.Tensor]) -> dict:
    """What the official files hold: {'state_dict': ...} (LAION) or {'model': ...} (MS)."""
    return {FAMILIES[family][1]: state}


def fingerprint(state: dict[str, torch.Tensor]) -> tuple[str, np.ndarray]:
    """Keys (newline-joined, sorted) and [n, 2] float64 (sum, L2 norm) of every tensor."""
    keys = sorted(state)
    values = [state[k].detach().double() for k in keys]
    stats = np.array([[float(v.sum()), float(v.norm())] for v in values], dtype=np.float64)
    return "\n".join(keys), stats


# --- inputs ------------------------------------------------------------------------------------

# Real recordings (see tests/data/clap_audio/README.md), at several rates and lengths.
CLIPS = [
    "speech_44k_1s.wav",  # 44.1 kHz mono, 1.1 s: both tile it
    "speech_44k_5s.flac",  # 44.1 kHz, exactly 220,500 samples: 240,001 at 48 kHz (no tiling)
    "speech_48k_7s.flac",  # 48 kHz mono, 6.8 s
    "speech_16k_4s.wav",  # 16 kHz mono, 4 s: resampled by both
    "speech_22k_10s.flac",  # 22.05 kHz mono, 9.9 s: longer than MS CLAP's 7 s clip
    "speech_44k_stereo_3s.flac",  # 44.1 kHz stereo, 2.9 s, a different sentence per channel
    "speech_44k_silence.flac",  # 44.1 kHz, 4.5 s with 1 s of digital silence spliced in
]
# Clips no longer than one official clip (LAION 10 s, MS 7 s after MS's channel
# flattening): the official file path crops longer ones at random.
FILE_CLIPS = {
    "laion-clap": CLIPS,
    "msclap": [c for c in CLIPS if c != "speech_22k_10s.flac"],
}
CLIP_SAMPLES = {"laion-clap": 480_000, "msclap": 308_700}

TEXTS = [
    "",
    "a dog barking",
    "the dog",
    "The Dog BARKING in the rain",
    "rain on a tin roof, then thunder!!",
    "wow! a siren!",
    "Wow ! ! !",
    "siren singing in the wind",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\n\nhere",
    "don't it's we'll they've I'M she'd",
    "café crème, naïve façade",
    "dog 🐶 and 🔊 loud",
    "犬の鳴き声",
    "100 dogs, 1000 cats, 3.14",
    "LA LA land",
    "an antelope and an ant",
    "<s> literal </s> markers <pad>",
    "text with <|endoftext|> inside",
    "’curly’ “quotes”",
    "a" * 40,
    "the the the the",
    "x",
    "!",
    "!!!",
    "Ġ Ċ symbols typed as text",
    "mixed123numbers456",
    "end with space ",
    " ".join(["the dog barking in the rain on a tin roof"] * 8),  # longer than 77 tokens
    "\u00e9 vs e\u0301",
]
# Texts embedded end to end (tokenizer + model) through the official code; every one fits
# in 77 tokens, as msclap's batching needs.
E2E_TEXTS = [0, 1, 3, 5, 10, 11, 12, 17, 18, 23]


def token_rows(family: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fixed token ids and attention masks [n, 77] (int64), laid out as each official
    tokenizer lays them out, with ids drawn over the whole vocabulary.

    LAION (RoBERTa): <s>=0, tokens, </s>=2, then <pad>=1 with mask 0. MS CLAP (GPT-2): tokens,
    "Ġ" (220) and <|endoftext|> (50256), then "!" (id 0, msclap's pad) with mask 0. One MS
    row has a "!" (id 0) among its tokens, as "wow! a dog" gives: msclap pools at the position
    the count of non-zero ids points to, not at the last token.
    """
    rng = np.random.default_rng(seed + (0 if family == "laion-clap" else 1))
    lengths = [1, 2, 5, 9, 16, 31, 52, 75] if family == "laion-clap" else [1, 3, 8, 20, 40, 75]
    ids, masks = [], []
    for n in lengths:
        if family == "laion-clap":
            row = [0, *rng.integers(4, 50264, n), 2]
            pad = 1
        else:
            row = [*rng.integers(1, 50256, n), 220, 50256]
            pad = 0
        ids.append(row + [pad] * (77 - len(row)))
        masks.append([1] * len(row) + [0] * (77 - len(row)))
    if family == "msclap":
        row = [*rng.integers(1, 50256, 6), 0, *rng.integers(1, 50256, 4), 220, 50256]
        ids.append(row + [0] * (77 - len(row)))
        masks.append([1] * len(row) + [0] * (77 - len(row)))
    return np.array(ids, dtype=np.int64), np.array(masks, dtype=np.int64)


def make_inputs(family: str, seed: int = 0) -> dict:
    """The fixed inputs of the golden file of `family`: texts for the tokenizer, the
    token-id rows and masks, and the audio clips (paths)."""
    ids, mask = token_rows(family, seed)
    return {
        "texts": list(TEXTS),
        "e2e_texts": [TEXTS[i] for i in E2E_TEXTS],
        "ids": ids,
        "mask": mask,
        "clips": [AUDIO_DIR / c for c in CLIPS],
        "file_clips": [AUDIO_DIR / c for c in FILE_CLIPS[family]],
    }
