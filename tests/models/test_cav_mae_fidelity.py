"""CAV-MAE reproduces the official code (YuanGongND/cav-mae) on a seeded checkpoint.

`tests/data/golden_cav_mae.npz` was computed by the official, unmodified code (timm 0.4.5,
torchaudio's `kaldi.fbank`, torchvision's transform) from `tests/helpers/cav_mae_recipe.py`:
`make_checkpoint(0)` loaded into `CAVMAE(modality_specific_depth=11)` as `src/retrieval.py`
loads the real one, float32 on a CPU, and `make_inputs(0)`. The file records the versions
and the official commit. Compared here:
- the filterbank: Kaldi's log mel energies of waveforms (before padding), and the model input
  after padding or cutting to 1024 frames and normalising (its first 256 frames are stored);
- the towers: fbanks and pixels -> tokens and pooled unit vectors;
- audio end to end: waveforms (one longer than a clip, cut; one stereo: the first channel),
  and the speech files of tests/data/clap_audio through `xsearch.api.embed` (decoding,
  resampling to 16 kHz by soxr HQ, the first channel, the fbank, the model);
- images end to end: pictures of several sizes through the resize, crop and normalisation.

To see the tests fail, change a fact they check: e.g. the window (`_window` in
kaldi_fbank.py, periodic=True), pre-emphasis 0.97 -> 0.9, LAYER_NORM_EPS 1e-5 -> 1e-6, or the
ImageNet mean in configs/cav-mae.json; each of those drops a comparison below its bound.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.helpers import cav_mae_recipe
from xsearch.media.audio import INT16_SCALE
from xsearch.models.cav_mae import build_cav_mae, cav_mae_config

GOLDEN = cav_mae_recipe.DATA / "golden_cav_mae.npz"
MIN_COSINE = 0.9999  # the bound; measured values are in each test's doc
CONFIG = cav_mae_config("cav-mae")

pytestmark = pytest.mark.slow  # the full-size model


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN, allow_pickle=False))


@pytest.fixture(scope="module")
def inputs():
    return cav_mae_recipe.make_inputs(0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The seeded checkpoint, saved as the official file is: a bare, `module.`-prefixed dict."""
    path = tmp_path_factory.mktemp("cav") / "audio_model.21.pth"
    torch.save(cav_mae_recipe.make_checkpoint(0), path)
    return path


@pytest.fixture(scope="module")
def encoder(checkpoint):
    from xsearch.models import load_encoder

    return load_encoder(str(checkpoint), "cav-mae", device="cpu")


def cosines(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    got, want = got.astype(np.float64), want.astype(np.float64)
    return (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)


def assert_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, (got.shape, want.shape)
    found = cosines(got, want)
    assert found.min() >= MIN_COSINE, f"{what}: cosines {np.round(found, 7)}"


def test_the_recipe_is_the_one_the_goldens_were_made_from(golden):
    keys, stats = cav_mae_recipe.fingerprint(cav_mae_recipe.make_checkpoint(0))
    assert int(golden["recipe_version"]) == cav_mae_recipe.RECIPE_VERSION
    assert keys == str(golden["recipe_keys"][0])
    np.testing.assert_allclose(stats, golden["recipe_stats"], rtol=1e-6)
    versions = json.loads(str(golden["versions"]))
    assert versions["timm"] == "0.4.5" and "cav_mae_commit" in versions


def test_kaldi_fbank_matches_torchaudio(golden, inputs):
    """Measured: equal to the bit, frame counts included."""
    from xsearch.models.kaldi_fbank import fbank

    for number, wave in enumerate(inputs["waves"]):
        want = golden[f"wave_fbank_raw_{number}"]
        signal = torch.from_numpy(wave)
        got = fbank((signal - signal.mean())[0], 16_000, 128).numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"wave {number}")


def test_the_model_input_is_padded_or_cut_and_normalised(golden, inputs, encoder):
    """Measured: 1.9e-4 apart at most (normalised units), from the mean being removed twice
    on this path (here, and again in the encoder: a rounding-level change)."""
    for number, wave in enumerate(inputs["waves"]):
        got = encoder.fbank(wave[0] - wave.mean())
        np.testing.assert_allclose(got[:256], golden["wave_fbank"][number], atol=1e-3)


def test_the_towers_match(golden, inputs, checkpoint):
    """fbanks and pixels straight into the towers. Measured: 1 - cosine <= 1.7e-11."""
    from xsearch.models.cav_mae_checkpoint import load_cav_mae_state

    model = build_cav_mae(CONFIG, device="meta")
    model.load_state_dict(load_cav_mae_state(checkpoint, CONFIG), strict=True, assign=True)
    model.eval()
    with torch.inference_mode():
        fbanks = torch.from_numpy(inputs["fbanks"])
        tokens = model.audio_tokens(fbanks)
        audio = model.audio_embedding(fbanks).numpy()
        image = model.image_embedding(torch.from_numpy(inputs["pixels"])).numpy()
    np.testing.assert_allclose(tokens[0, :8].numpy(), golden["audio_tokens"], atol=2e-4)
    assert_close(audio, golden["audio_embed"], "audio")
    assert_close(image, golden["image_embed"], "image")
    assert cosines(audio[:1], audio[1:]).max() < 0.99  # distinct inputs stay apart


def test_waveforms_match(golden, inputs, encoder):
    """Padded, exact, cut (12 s: the first 1024 frames, one window of 10.255 s) and stereo
    (the first channel). Measured: 1 - cosine <= 2e-10."""
    waves = [wave[0] * INT16_SCALE for wave in inputs["waves"]]
    got = encoder.embed("audio", waves[:2] + waves[3:])
    want = golden["wave_audio_embed"]
    assert_close(got, want[[0, 1, 3]], "waves")
    # a wave longer than a clip: the official loader keeps its first 1024 frames
    first = encoder.embed("audio", [waves[2][: encoder.clip_samples]])
    assert_close(first, want[2:3], "the first clip of a long wave")


def test_audio_files_match(golden, checkpoint):
    """Files through the public API. Measured: 1 - cosine below float64's resolution for
    each, the stereo file (its first channel) and the 16 kHz one included; the stereo file
    downmixed to the mean of its channels instead would be 0.19 off."""
    import xsearch.api

    names = golden["clip_names"].tolist()
    files = [cav_mae_recipe.AUDIO_DIR / name for name in names]
    got = xsearch.api.embed("audio", files, weights=str(checkpoint), model="cav-mae", device="cpu")
    assert_close(got, golden["clip_audio_embed"], "files")


def test_pictures_match(golden, inputs, encoder):
    """PIL pictures through the resize, crop and normalisation. Measured: pixels equal to
    the bit, 1 - cosine <= 7.5e-12."""
    from PIL import Image

    pictures = [Image.fromarray(p) for p in inputs["pictures"]]
    for number, picture in enumerate(pictures):
        np.testing.assert_allclose(
            encoder.pixels(picture), golden[f"picture_pixels_{number}"], atol=1e-5
        )
    assert_close(encoder.embed("image", pictures), golden["picture_image_embed"], "pictures")
