"""A seeded MMV parameter tree in the official format, and fixed inputs, for golden tests.

`tests/data/golden_mmv_s3d.npz` holds what the official JAX/Haiku code (google-deepmind/
deepmind-research `mmv/`, `AudioTextVideoEmbedding` with `config.get_model_config('mmv_s3d')`,
applied with is_training=False) computes from `make_tree(config)` and `make_inputs()`;
`tests/models/test_mmv_fidelity.py` checks that xsearch reproduces it. The real weights cannot
be fetched in tests, so the tree is built from the key list the config implies
(`expected_haiku_keys`, which equals the official init's), never from a model's init code.
Numpy only (no torch), so that the official code's own environment can import it.

Recipe, every array drawn from a generator seeded by (seed, crc32 of "collection module/name"),
so the order of keys does not matter:
- convolution weights N(0, 2 / fan_in) (He, fan_in = kernel volume x input channels), those
  of the audio ResNet's residual branches' last conv (`conv_2`) RESIDUAL_GAIN times that (the
  fixed batch norms do not renormalise, so the pre-activation sums would otherwise grow
  sixteen-fold doubling); linear weights N(0, 1 / fan_in), their biases 0.05 N;
- self-gating biases 1.5 + 0.2 N (a sigmoid near 0.8, so that gated activations do not
  shrink by half at each of the dozen gates), weights N(0, 1 / fan_in);
- batch norm: scale 1 + 0.1 N, offset 0.05 N; EMA average of means 0.05 N, of variances
  uniform in [0.5, 1.5]; counters 10 (int32, 0-d); `hidden` = average x (1 - 0.9^10), a
  third smaller, so that a port reading `hidden` instead of `average` fails;
- the word embedding table N(0, 1).
"""

from __future__ import annotations

import pickle
import zlib
from pathlib import Path

import numpy as np

DATA = Path(__file__).parents[1] / "data"
GOLDEN = DATA / "golden_mmv_s3d.npz"
GOLDENS = {  # config -> the official outputs of its seeded tree
    "mmv-s3d": GOLDEN,
    "mmv-tsm-resnet50": DATA / "golden_mmv_tsm_resnet50.npz",
    "mmv-tsm-resnet50x2": DATA / "golden_mmv_tsm_resnet50x2.npz",
}
RECIPE_VERSION = 2  # bump when the tree or the inputs change
SEED = 0
COUNTER = 10  # few updates: `hidden` (not used) is then far from `average` (used)
RESIDUAL_GAIN = 0.25

# inputs of the golden file: clips [B, T, H, W, 3], spectrograms [B, frames, mel bins]
CLIPS_EVEN = (2, 32, 64, 64)
CLIPS_ODD = (1, 20, 72, 72)  # after space-to-depth 10 x 36 x 36: pools meet odd sizes
CLIPS_TSM = (1, 9, 57, 61)  # TSM-ResNet takes any size: odd T, H and W
MELS_EVEN = (2, 150, 80)  # 3.2 s at 48 kHz with a 1024-sample hop; 150 halves to an odd 75
MELS_ODD = (1, 97, 80)
WORDS = 3
CONTEXT = 16


def _rng(seed: int, key: tuple[str, str, str]) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(" ".join(key).encode())])


def _array(key: tuple[str, str, str], shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    collection, module, name = key
    g = _rng(seed, key)
    leaf = module.rsplit("/", 1)[-1]
    if collection == "state":
        if name == "counter":
            return np.array(COUNTER, dtype=np.int32)
        if leaf == "mean_ema":
            average = 0.05 * g.standard_normal(shape)
        else:
            average = g.uniform(0.5, 1.5, shape)
        if name == "hidden":
            average = average * (1.0 - 0.9**COUNTER)
        return average.astype(np.float32)
    if name == "scale":
        return (1.0 + 0.1 * g.standard_normal(shape)).astype(np.float32)
    if name == "offset":
        return (0.05 * g.standard_normal(shape)).astype(np.float32)
    if name == "embeddings":
        return g.standard_normal(shape, dtype=np.float32)
    if name == "b":
        if leaf == "self_gating":
            return (1.5 + 0.2 * g.standard_normal(shape)).astype(np.float32)
        return (0.05 * g.standard_normal(shape)).astype(np.float32)
    if name == "w":
        fan_in = int(np.prod(shape[:-1]))
        gain = 2.0 if len(shape) > 2 and leaf != "text_conv1" else 1.0  # convolutions: He
        if leaf == "conv_2":  # a residual branch's last conv: small, so the sum does not grow
            gain *= RESIDUAL_GAIN**2
        return (np.sqrt(gain / fan_in) * g.standard_normal(shape)).astype(np.float32)
    raise ValueError(f"no recipe for {key} {shape}")


def make_tree(config, seed: int = SEED) -> dict:
    """{'params': {module: {name: array}}, 'state': ...} for `config` (an MmvConfig)."""
    from xsearch.models.mmv_params import expected_haiku_keys

    tree: dict = {"params": {}, "state": {}}
    for key, (shape, dtype) in expected_haiku_keys(config).items():
        collection, module, name = key
        tree[collection].setdefault(module, {})[name] = _array(key, shape, dtype, seed)
    return tree


def write_official_pkl(tree: dict, path: str | Path) -> Path:
    """The tree pickled as a plain {'params': ..., 'state': ...} dict (protocol 4)."""
    path = Path(path)
    with open(path, "wb") as f:
        pickle.dump({"params": tree["params"], "state": tree["state"]}, f, protocol=4)
    return path


def fingerprint(tree: dict) -> np.ndarray:
    """[n, 2] float64 (sum, L2 norm) of every array, keys in sorted order."""
    rows = []
    for collection in ("params", "state"):
        for module in sorted(tree[collection]):
            for name in sorted(tree[collection][module]):
                a = np.asarray(tree[collection][module][name], dtype=np.float64)
                rows.append((a.sum(), np.sqrt((a * a).sum())))
    return np.array(rows, dtype=np.float64)


def make_inputs(seed: int = SEED, vocab_size: int = 65536) -> dict[str, np.ndarray]:
    """Clips in [0, 1] (smooth in time and space plus noise, as frames are), log-mel-like
    spectrograms (N(0, 1)), and word ids [3, 16] with the pad id 0 after the words."""
    g = np.random.default_rng(seed)

    def clips(shape):  # clip i: blocks of 2^(i + 2) pixels, its own contrast and noise
        b, t, h, w = shape
        out = []
        for i in range(b):
            block = 2 ** (i + 2)
            base = g.uniform(0, 1, (1, -(-h // block), -(-w // block), 3))
            base = base.repeat(block, axis=1).repeat(block, axis=2)[:, :h, :w]
            drift = np.linspace(0, 0.5, t)[:, None, None, None] * (base - 0.5)
            noise = (0.05 + 0.2 * i) * g.standard_normal((t, h, w, 3))
            out.append(np.clip((0.6 + 0.4 * i) * (base - 0.5) + 0.5 + drift + noise, 0, 1))
        return np.stack(out).astype(np.float32)

    def mels(shape):  # each with its own spectral tilt and temporal envelope
        b, frames, bins = shape
        tilt = g.uniform(-2, 2, (b, 1, 1)) * np.linspace(-1, 1, bins)[None, None, :]
        envelope = np.sin(np.linspace(0, g.uniform(2, 12), frames))[None, :, None]
        return (tilt + envelope + g.standard_normal(shape)).astype(np.float32)

    ids = np.zeros((WORDS, CONTEXT), dtype=np.int32)
    for row, count in enumerate((5, CONTEXT, 1)):
        ids[row, :count] = g.integers(1, vocab_size, count)
    ids[1, -1] = vocab_size - 1
    return {
        "clips_even": clips(CLIPS_EVEN),
        "clips_odd": clips(CLIPS_ODD),
        "mels_even": mels(MELS_EVEN),
        "mels_odd": mels(MELS_ODD),
        "clips_tsm": clips(CLIPS_TSM),  # drawn last: the others do not depend on it
        "word_ids": ids,
    }
