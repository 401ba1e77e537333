"""xsearch's AudioCLIP reproduces the official implementation: golden embeddings.

`tests/data/golden_audioclip.npz` holds embeddings computed by the official AudioCLIP code
(github.com/AndreyGuzhov/AudioCLIP, float32 on CPU) for the seeded checkpoint and the inputs
of `tests/helpers/golden_recipe.py`; its `recipe` entry says how. The official code is not
part of this repository and nothing here runs it: these tests rebuild the checkpoint, load
it through xsearch's own checkpoint path and compare xsearch's embeddings with the stored
ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parents[1] / "data" / "golden_audioclip.npz"
# Read at import: the autouse fixture in conftest.py hides XSEARCH_WEIGHTS from the tests.
REAL_WEIGHTS = os.environ.get("XSEARCH_WEIGHTS", "")

# Measured: >= 0.9999999 for every row. Text and image are pure float32 arithmetic, so their
# bounds are tight enough to catch GELU for QuickGELU (0.99993) or a bilinear resize (0.9984).
# Audio keeps room for the platform: the official code's own float32 result differs from its
# float64 one by up to 1.3e-4 on these inputs (rounding in the quietest spectrogram bins).
MIN_COSINE = {"text": 0.99999, "image": 0.9999, "audio": 0.999}
# Distinct inputs must stay apart, or a collapsed model would pass the cosine check.
MAX_OFF_DIAGONAL = 0.95


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def rebuilt(golden, tmp_path_factory) -> dict:
    """The checkpoint rebuilt from the recipe (its fingerprint), saved, loaded through
    xsearch's checkpoint path, and xsearch's embeddings of the golden inputs."""
    import torch

    from tests.helpers.golden_recipe import fingerprint, make_checkpoint, make_inputs
    from xsearch.models.checkpoint import load_checkpoint
    from xsearch.models.encoder import AudioCLIPEncoder

    state = make_checkpoint(int(golden["seed"]), str(golden["config"]))
    keys, stats = fingerprint(state)
    path = tmp_path_factory.mktemp("golden") / "seeded-audioclip.pt"
    torch.save(state, path)
    del state
    encoder = AudioCLIPEncoder(load_checkpoint(path), "cpu")
    path.unlink()  # about 540 MB
    texts, images, waves = make_inputs()
    return {
        "checkpoint_keys": keys,
        "checkpoint_stats": stats,
        "text": encoder.embed_text(texts),
        "image": encoder.embed_images(images),
        "audio": encoder.embed_audio(waves),
    }


def test_golden_file_matches_recipe(golden):
    from tests.helpers.golden_recipe import RECIPE_VERSION, make_inputs

    assert int(golden["version"]) == RECIPE_VERSION, "recipe changed: regenerate the golden file"
    texts, images, waves = make_inputs()
    assert [len(golden[k]) for k in ("text", "image", "audio")] == [
        len(texts),
        len(images),
        len(waves),
    ]
    for key in ("text", "image", "audio"):
        norms = np.linalg.norm(golden[key].astype(np.float64), axis=1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)


@pytest.mark.slow  # rebuilds the full-size model
def test_rebuilt_checkpoint_is_the_golden_one(golden, rebuilt):
    """Same keys, and per tensor the same sum and norm. The tolerances absorb rounding in the
    BatchNorm calibration (with the audio frontend run in float64 instead: norms within 7e-5,
    sums within 3e-3 of the norm), not a change in what the calibration computes."""
    keys = str(golden["checkpoint_keys"]).split("\n")
    assert rebuilt["checkpoint_keys"].split("\n") == keys
    want, got = golden["checkpoint_stats"], rebuilt["checkpoint_stats"]
    sums, norms = want[:, 0], want[:, 1]
    bad = [
        f"{key}: sum {g[0]:.6g} (golden {s:.6g}), norm {g[1]:.6g} (golden {n:.6g})"
        for key, g, s, n in zip(keys, got, sums, norms)
        if abs(g[1] - n) > 1e-3 * n or abs(g[0] - s) > 2e-2 * n
    ]
    assert not bad, f"{len(bad)} tensors differ from the golden checkpoint: " + "; ".join(bad[:5])


@pytest.mark.parametrize("modality", ["text", "image", "audio"])
def test_golden_inputs_are_discriminative(golden, modality):
    vectors = golden[modality].astype(np.float64)
    cosines = vectors @ vectors.T
    off_diagonal = cosines[~np.eye(len(cosines), dtype=bool)]
    assert off_diagonal.max() < MAX_OFF_DIAGONAL, off_diagonal.max()


@pytest.mark.slow  # rebuilds the full-size model
@pytest.mark.parametrize("modality", ["text", "image", "audio"])
def test_matches_official_implementation(golden, rebuilt, modality):
    got, want = rebuilt[modality], golden[modality].astype(np.float32)
    assert got.shape == want.shape and got.dtype == np.float32
    cosines = (got.astype(np.float64) * want).sum(axis=1)
    assert cosines.min() >= MIN_COSINE[modality], f"per-input cosines {np.round(cosines, 6)}"


def test_audio_frontend_ignores_autocast():
    """The log-power frontend spans ~250 dB: in float16 quiet bins would become -inf dB."""
    import torch

    from xsearch.models.audio_frontend import log_power_bands
    from xsearch.models.checkpoint import build_model
    from xsearch.models.config import get_config

    torch.manual_seed(0)
    audio = build_model(get_config("audioclip-tiny")).audio
    wave = torch.zeros(1, 22050)
    wave[0, 5000:9000] = 8000 * torch.sin(torch.arange(4000) * 0.2)  # a tone amid silence

    def bands():
        return log_power_bands(wave, audio.fbsp, audio.window, audio.n_fft, audio.hop_length)

    with torch.no_grad():
        plain = bands()
        with torch.autocast("cpu", dtype=torch.float16):
            mixed = bands()
    assert mixed.dtype == torch.float32
    assert torch.equal(mixed, plain)
    assert torch.isfinite(plain).all()


@pytest.mark.slow  # the full-size model
@pytest.mark.skipif(
    not REAL_WEIGHTS or REAL_WEIGHTS == "random",
    reason="set XSEARCH_WEIGHTS to an official AudioCLIP checkpoint to run",
)
def test_real_checkpoint():
    from tests.helpers.golden_recipe import make_inputs
    from xsearch.models.checkpoint import load_checkpoint
    from xsearch.models.encoder import AudioCLIPEncoder

    model = load_checkpoint(REAL_WEIGHTS)
    scales = model.logit_scales()
    assert all(np.isfinite(v) and 1.0 <= v <= 100.0 for v in scales.values()), scales
    encoder = AudioCLIPEncoder(model, "cpu")
    texts, images, waves = make_inputs()
    for rows in (
        encoder.embed_text(texts),
        encoder.embed_images(images),
        encoder.embed_audio(waves),
    ):
        assert rows.shape[1] == model.config.embed_dim and np.isfinite(rows).all()
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
