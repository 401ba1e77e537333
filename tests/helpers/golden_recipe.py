"""A seeded, discriminative AudioCLIP checkpoint and fixed inputs for the golden fidelity test.

`tests/data/golden_audioclip.npz` holds the official AudioCLIP implementation's embeddings of
`make_inputs()` under `make_checkpoint()`; `test_fidelity.py` checks that xsearch reproduces
them. The checkpoint is drawn from seeded generators, never from a model's own init code, so
it does not change when torch or open_clip change how they initialise layers.

Recipe: every tensor is drawn from a generator seeded by (seed, key) at a scale typical of its
layer (convolutions He-normal, linear layers 1/sqrt(fan_in), norm weights 1 + 0.1 N and biases
0.1 N, bottleneck `bn3` weights scaled by RESIDUAL_GAIN, the fbsp frontend's m, fb, fc spread
around their trained regime, scipy's Blackman-Harris window); then every BatchNorm's running
statistics are set to the mean and variance of its input over a fixed, seeded calibration
batch, so that each layer works in its normal range. A freshly initialised CLIP maps distinct
inputs onto nearly one direction (CLIP zeroes `bn3`; uncalibrated statistics blow activations
up), which would let a cosine test pass trivially; this one keeps them apart, and the test
checks that too.
"""

from __future__ import annotations

import math
import re
import zlib

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy.signal import get_window
from torch import nn

from xsearch.models.audioclip import AudioCLIP
from xsearch.models.checkpoint import build_model
from xsearch.models.config import get_config

RECIPE_VERSION = 1  # bump when the checkpoint or the inputs change
SAMPLE_RATE = 44100
# Bottleneck blocks end in bn3; its weight is scaled by this. At 1.0 the random 16-block
# ResNets amplify float32 rounding in the audio frontend's quietest bins ~80-fold, so the
# golden vectors would depend on the platform; small residual branches (CLIP's own init
# zeroes them) keep the towers well-conditioned and still discriminative.
RESIDUAL_GAIN = 0.2


def _gen(seed: int, key: str) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))


def _normal(g: torch.Generator, shape: tuple[int, ...], std: float, mean: float = 0.0):
    return torch.randn(shape, generator=g) * std + mean


def _tensor(key: str, shape: tuple[int, ...], module: nn.Module, g: torch.Generator):
    """One state-dict entry; `module` is the module that owns it (meta device)."""
    name = key.rsplit(".", 1)[-1]
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if name == "weight":
            gain = RESIDUAL_GAIN if re.search(r"layer\d\.\d+\.bn3\.", key) else 1.0
            return gain * _normal(g, shape, 0.1, 1.0)
        if name == "bias":
            return _normal(g, shape, 0.1)
        if name == "num_batches_tracked":
            return torch.zeros((), dtype=torch.long)
        return torch.zeros(shape) if name == "running_mean" else torch.ones(shape)  # calibrated
    if isinstance(module, nn.LayerNorm):
        return _normal(g, shape, 0.1, 1.0 if name == "weight" else 0.0)
    if isinstance(module, nn.Embedding):
        return _normal(g, shape, 0.02)
    if name.endswith("bias"):
        return _normal(g, shape, 0.02) if shape else torch.zeros(shape)
    if isinstance(module, nn.Conv2d):  # He-normal over the fan-in
        return _normal(g, shape, math.sqrt(2.0 / math.prod(shape[1:])))
    if name in ("weight", "in_proj_weight"):  # linear layers
        return _normal(g, shape, 1.0 / math.sqrt(shape[1]))
    if key == "audio.fbsp.m":  # the B-spline window's exponent, trained values are O(1)
        return 0.3 + 0.9 * torch.rand(shape, generator=g)
    if key == "audio.fbsp.fb":  # bandwidths, must stay positive
        return (1.0 + 0.1 * torch.randn(shape, generator=g)).abs()
    if key == "audio.fbsp.fc":  # centre frequencies: the FFT bins, jittered
        return torch.arange(shape[0], dtype=torch.float32) + _normal(g, shape, 0.3)
    if key == "audio.window":
        return torch.from_numpy(get_window("blackmanharris", shape[0], fftbins=True)).float()
    if key.startswith("logit_scale"):
        return torch.tensor(math.log(1 / 0.07))
    if key == "positional_embedding":  # text
        return _normal(g, shape, 0.01)
    # visual.attnpool.positional_embedding [h*w + 1, c] and text_projection [width, embed]
    return _normal(g, shape, shape[-1] ** -0.5 if "attnpool" in key else shape[0] ** -0.5)


def calibration_batch(seed: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images [4, 3, s, s] (smooth fields plus grain) and 16 half-second waveforms
    [16, n] in int16 scale: noise from -70 to -10 dBFS plus a tone of random pitch and level,
    with gaps of near-silence (1 LSB noise). Many short clips, as the last attention gate's
    BatchNorm sees one value per clip. No digital silence: its spectrogram is float32 rounding
    noise, which would make the statistics, and so the checkpoint, depend on the platform."""
    g = _gen(seed, "calibration")
    coarse = torch.randn((4, 3, 8, 8), generator=g)
    images = nn.functional.interpolate(coarse, size=image_size, mode="bilinear")
    images = images + 0.3 * torch.randn((4, 3, image_size, image_size), generator=g)
    n, length = 16, SAMPLE_RATE // 2
    t = torch.arange(length) / SAMPLE_RATE
    noise = 10 ** (1 + 3 * torch.rand((n, 1), generator=g))  # std 10 to 10000
    pitch = 10 ** (2 + 2 * torch.rand((n, 1), generator=g))  # 100 Hz to 10 kHz
    level = 8000 * torch.rand((n, 1), generator=g)
    gaps = (torch.rand((n, 5), generator=g) < 0.25).repeat_interleave(length // 5 + 1, dim=1)
    sound = noise * torch.randn((n, length), generator=g) + level * torch.sin(
        2 * math.pi * pitch * t
    )
    quiet = torch.randn((n, length), generator=g)
    return images, torch.where(gaps[:, :length], quiet, sound).round()


def make_checkpoint(seed: int = 0, config: str = "audioclip") -> dict[str, torch.Tensor]:
    """The seeded checkpoint (an official-format state dict) described in the module doc."""
    cfg = get_config(config)
    with torch.device("meta"):
        skeleton = AudioCLIP(cfg)
    owners = {}
    for mod_name, module in skeleton.named_modules():
        for key, _ in [
            *module.named_parameters(recurse=False),
            *module.named_buffers(recurse=False),
        ]:
            owners[f"{mod_name}.{key}" if mod_name else key] = module
    state = {
        key: _tensor(key, tuple(value.shape), owners[key], _gen(seed, key))
        for key, value in skeleton.state_dict().items()
    }

    model = build_model(cfg, state)  # uses the tensors in `state` in place
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:  # cumulative averages over one batch: the batch's own statistics
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    images, waves = calibration_batch(seed, cfg.vision.image_size)
    with torch.no_grad():
        model.encode_image(images)
        model.encode_audio(waves)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _images(rng: np.random.Generator) -> list[Image.Image]:
    """Six in-memory images of different sizes, aspect ratios and modes."""
    # landscape: a vertical gradient with a sun and a mountain
    sky = np.linspace([250, 140, 40], [30, 60, 160], 480)[:, None, :].repeat(640, axis=1)
    sunset = Image.fromarray(sky.astype(np.uint8))
    draw = ImageDraw.Draw(sunset)
    draw.ellipse((400, 60, 520, 180), fill=(255, 230, 90))
    draw.polygon([(0, 480), (180, 220), (330, 380), (470, 260), (640, 480)], fill=(40, 35, 50))
    # portrait: a red and white checkerboard crossed by a thick blue line
    squares = (np.add.outer(np.arange(500) // 25, np.arange(300) // 25) % 2).astype(bool)
    checker = Image.fromarray(
        np.where(squares[..., None], [220, 30, 30], [245, 245, 245]).astype(np.uint8)
    )
    ImageDraw.Draw(checker).line((0, 0, 300, 500), fill=(20, 40, 200), width=12)
    # square uniform noise
    noise = Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))
    # tiny, so the resize upsamples a lot
    tiny = Image.new("RGB", (96, 64), (30, 160, 60))
    ImageDraw.Draw(tiny).rectangle((10, 10, 40, 50), fill=(255, 255, 255))
    ImageDraw.Draw(tiny).ellipse((55, 20, 85, 50), fill=(0, 0, 0))
    # wide panorama of coloured interference stripes
    yy, xx = np.mgrid[0:300, 0:1200] / 300.0
    bands = [
        np.sin(2 * np.pi * (f * xx + g * yy)) for f, g in ((3.0, 1.0), (1.5, -2.0), (7.0, 0.5))
    ]
    panorama = Image.fromarray((127.5 * (1 + np.stack(bands, axis=-1))).astype(np.uint8))
    # greyscale ("L") radial rings
    yy, xx = np.mgrid[-128:129, -128:129]
    rings = 127.5 * (1 + np.cos(np.hypot(yy, xx) / 6.0)) * np.exp(-np.hypot(yy, xx) / 200.0)
    grey = Image.fromarray(rings.astype(np.uint8))  # 2-D uint8: mode "L"
    return [sunset, checker, noise, tiny, panorama, grey]


def _waves(rng: np.random.Generator) -> list[np.ndarray]:
    """Six 44.1 kHz waveforms in int16 scale (integer-valued float32), 0.03 s to 10 s."""
    sr = SAMPLE_RATE

    def t(seconds: float) -> np.ndarray:
        return np.arange(round(seconds * sr)) / sr

    fade = np.minimum(1.0, np.minimum(t(0.5), t(0.5)[::-1]) / 0.01)
    tone = 8000 * np.sin(2 * np.pi * 440 * t(0.5)) * fade
    chirp = 6000 * np.sin(2 * np.pi * (100 * t(5) + (10000 - 100) / (2 * 5) * t(5) ** 2))
    gate = np.repeat(rng.uniform(0, 1, 20) > 0.4, sr // 2) * np.repeat(
        rng.uniform(500, 8000, 20), sr // 2
    )
    bursts = gate * rng.standard_normal(10 * sr)
    clicks = np.zeros(2 * sr)
    clicks[sr // 8 :: sr // 4] = 20000.0
    hum = t(7.3)
    harmonic = sum(3000 / k * np.sin(2 * np.pi * 220 * k * hum) for k in range(1, 6))
    harmonic = harmonic * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * hum)) + 200 * rng.standard_normal(
        hum.size
    )
    blip = 10000 * np.sin(2 * np.pi * 1000 * t(0.03))  # shorter than one analysis frame
    # Every wave gets a recording's noise floor (std 10 LSB, -70 dBFS). Without one, the
    # quietest time-frequency bins hold float32 rounding noise, which differs between any two
    # implementations (and between the official code in float32 and in float64: cosine 0.93
    # on a demo recording with digital silence). With it, float32 against float64 is >= 0.9998.
    waves = [tone, chirp, bursts, clicks, harmonic, blip]
    waves = [w + 10.0 * rng.standard_normal(w.size) for w in waves]
    return [np.clip(np.round(w), -32768, 32767).astype(np.float32) for w in waves]


def _texts() -> list[str | list[str]]:
    # 75 BPE tokens: with the start and end tokens, exactly CLIP's 77-token context
    full = " ".join(["the quick brown fox jumps over the lazy dog"] * 8 + ["the quick brown"])
    return [
        "a dog barking",
        "rain falling on a tin roof",
        ["siren", "car horn", "traffic"],
        "An ALARM clock ringing, loudly!",
        "café, crème brûlée & naïve façade",
        "x",
        full,
    ]


def make_inputs(seed: int = 0) -> tuple[list[str | list[str]], list[Image.Image], list[np.ndarray]]:
    """The fixed (texts, images, waves) the golden embeddings were computed for."""
    rng = np.random.default_rng(seed)
    return _texts(), _images(rng), _waves(rng)


def fingerprint(state: dict[str, torch.Tensor]) -> tuple[str, np.ndarray]:
    """Keys (newline-joined) and [n, 2] float64 (sum, L2 norm) of every tensor of `state`.

    The golden file stores this for the checkpoint its vectors were computed with, so a test
    can tell that the rebuilt checkpoint is the same one. That matters because the BatchNorm
    calibration runs xsearch's own forward: a bug there that is a per-channel affine map
    before a BatchNorm (say 20 log10 for 10 log10) would otherwise be calibrated away.
    """
    keys = sorted(state)
    values = [state[k].detach().double() for k in keys]
    stats = np.array([[float(v.sum()), float(v.norm())] for v in values], dtype=np.float64)
    return "\n".join(keys), stats
