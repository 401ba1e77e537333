"""MMV reproduces the official code (google-deepmind/deepmind-research `mmv/`) on seeded trees.

`tests/data/golden_mmv_s3d.npz` was computed by the official, unmodified JAX/Haiku code
(`AudioTextVideoEmbedding(**config.get_model_config('mmv_s3d.pkl'))`, applied with
is_training=False after `eval_ucf101.space_to_depth_batch`, float32 on a CPU, matmul precision
"highest"; the file records the versions and the commit) from `tests/helpers/mmv_recipe.py`:
`make_tree(mmv_config('mmv-s3d'))` and `make_inputs()`. Here the same tree goes through
`state_dict_from_haiku` into the port. Compared: video va/vat of clips 32 x 64 x 64 and an odd
20 x 72 x 72 (odd sizes after space-to-depth and every pool), audio va/vat of log-mel
spectrograms 150 x 80 and 97 x 80, text vat (and the text-to-audio output) of word ids with
pads, the 1024-d and 2048-d representations, and corners of five S3D endpoints (where SAME's
extra padding sits).

The TSM-ResNet-50 models (x1, x2) are checked the same way against
`golden_mmv_tsm_resnet50{,x2}.npz` (`get_model_config('mmv_tsm_resnet_x1.pkl' / '..._x2.pkl')`,
no space-to-depth): their video outputs for the 32 x 64 x 64 clips and an odd 9 x 57 x 61
one, and corners of four endpoints of the latter's last frames. Their audio and text towers are
the S3D model's (the same keys, so the same seeded values), checked above.

Measured (torch 2.14 CPU): 1 - cosine <= 9e-13 for every output and endpoint, max abs diff
<= 2.2e-5 on outputs of magnitude up to 19 (audio va; 1e-6 relative), <= 5e-6 on the video ones.
To see the tests fail, change a fact they check: e.g. BN eps 1e-5 -> 1e-3 in
configs/mmv-s3d.json, put SAME's extra padding first in `same_pads`, or keep TSM's shifted
channels in place (the usual PyTorch TSM) in `temporal_shift`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.helpers import mmv_recipe
from xsearch.models.mmv import build_mmv, mmv_config, prepare_for_inference, space_to_depth
from xsearch.models.mmv_params import state_dict_from_haiku

CONFIG = mmv_config("mmv-s3d")
MAX_ONE_MINUS_COS = 1e-9  # the bar is cosine >= 0.999; float32 rounding gives ~1e-13
MAX_RELATIVE = 2e-5  # max abs diff / max abs of the official output; measured ~1e-6
ENDPOINTS = ("Conv2d_1a_7x7", "MaxPool_2a_3x3", "Conv2d_2c_3x3", "MaxPool_4a_3x3", "Mixed_5c")


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(mmv_recipe.GOLDEN, allow_pickle=False))


@pytest.fixture(scope="module")
def tree():
    return mmv_recipe.make_tree(CONFIG)


@pytest.fixture(scope="module")
def inputs():
    return {k: torch.from_numpy(v) for k, v in mmv_recipe.make_inputs().items()}


@pytest.fixture(scope="module", params=["as loaded", "prepared"])
def model(tree, request):
    """The port as the checkpoint loads it, and as the encoder runs it (BatchNorms folded
    into the convolutions, channels-last weights: `prepare_for_inference`)."""
    model = build_mmv(CONFIG, device="meta")
    model.load_state_dict(state_dict_from_haiku(tree, CONFIG), strict=True, assign=True)
    return prepare_for_inference(model.eval()) if request.param == "prepared" else model.eval()


def compare(got: torch.Tensor | np.ndarray, want: np.ndarray, what: str) -> tuple[float, float]:
    """(1 - cosine, worst over rows; max abs diff), asserted within the bounds."""
    got = np.asarray(got, dtype=np.float64).reshape(len(want), -1)
    want = want.astype(np.float64).reshape(len(want), -1)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    off, diff = float(1 - cos.min()), float(np.abs(got - want).max())
    scale = np.abs(want).max()
    print(f"{what:24s} 1-cos {off:.1e}  max abs diff {diff:.1e}  (max |official| {scale:.1e})")
    assert got.shape == want.shape
    assert off <= MAX_ONE_MINUS_COS, f"{what}: 1 - cosine {off:.3g}"
    assert diff <= MAX_RELATIVE * scale, f"{what}: max abs diff {diff:.3g}"
    if len(want) > 1:  # the part that differs between inputs, alone
        got_c, want_c = got - got.mean(0), want - want.mean(0)
        cos_c = (got_c * want_c).sum() / np.linalg.norm(got_c) / np.linalg.norm(want_c)
        assert 1 - cos_c <= 1e-6, f"{what}: centred 1 - cosine {1 - cos_c:.3g}"
    return off, diff


def test_the_recipe_is_the_one_the_goldens_were_made_from(golden, tree):
    assert int(golden["recipe_version"]) == mmv_recipe.RECIPE_VERSION
    assert int(golden["recipe_seed"]) == mmv_recipe.SEED
    np.testing.assert_allclose(mmv_recipe.fingerprint(tree), golden["recipe_stats"], rtol=1e-6)
    sizes = json.loads(str(golden["input_sizes"]))
    assert tuple(sizes["clips_odd"]) == mmv_recipe.CLIPS_ODD
    assert tuple(sizes["mels_even"]) == mmv_recipe.MELS_EVEN
    versions = json.loads(str(golden["versions"]))
    assert "deepmind_research_commit" in versions and "haiku" in versions


@pytest.mark.parametrize("suffix", ["even", "odd"])
def test_video_matches(golden, inputs, model, suffix):
    with torch.inference_mode():
        clips = inputs[f"clips_{suffix}"]
        representation = model.video_representation(clips)
        va, vat = model.heads.video(representation)
    compare(representation, golden[f"video_repr_{suffix}"], f"video repr {suffix}")
    compare(va, golden[f"video_va_{suffix}"], f"video va {suffix}")
    compare(vat, golden[f"video_vat_{suffix}"], f"video vat {suffix}")


def test_s3d_endpoints_match_at_the_padded_corner(golden, inputs, model):
    with torch.inference_mode():
        x = space_to_depth(inputs["clips_odd"])
        for name in ENDPOINTS:
            y = model.video(x, final_endpoint=name).permute(0, 2, 3, 4, 1)[0, -2:, -3:, -3:, :16]
            compare(y.reshape(1, -1), golden[f"endpoint_{name}"].reshape(1, -1), name)


@pytest.mark.parametrize("suffix", ["even", "odd"])
def test_audio_matches(golden, inputs, model, suffix):
    with torch.inference_mode():
        representation = model.audio_representation(inputs[f"mels_{suffix}"])
        va, vat = model.heads.audio(representation)
    compare(representation, golden[f"audio_repr_{suffix}"], f"audio repr {suffix}")
    compare(va, golden[f"audio_va_{suffix}"], f"audio va {suffix}")
    compare(vat, golden[f"audio_vat_{suffix}"], f"audio vat {suffix}")


@pytest.mark.parametrize(
    "name",
    ["mmv-tsm-resnet50", pytest.param("mmv-tsm-resnet50x2", marks=pytest.mark.slow)],
)
def test_tsm_video_matches(name, inputs):
    config = mmv_config(name)
    golden = dict(np.load(mmv_recipe.GOLDENS[name], allow_pickle=False))
    tree = mmv_recipe.make_tree(config)
    np.testing.assert_allclose(mmv_recipe.fingerprint(tree), golden["recipe_stats"], rtol=1e-6)
    model = build_mmv(config, device="meta")
    model.load_state_dict(state_dict_from_haiku(tree, config), strict=True, assign=True)
    del tree
    _tsm_matches(name, model.eval(), golden, inputs)
    _tsm_matches(name, prepare_for_inference(model), golden, inputs)  # as the encoder runs it


def _tsm_matches(name, model, golden, inputs) -> None:
    with torch.inference_mode():
        for suffix, clips in (("even", "clips_even"), ("odd", "clips_tsm")):
            representation = model.eval().video_representation(inputs[clips])
            va, vat = model.heads.video(representation)
            compare(representation, golden[f"video_repr_{suffix}"], f"{name} repr {suffix}")
            compare(va, golden[f"video_va_{suffix}"], f"{name} va {suffix}")
            compare(vat, golden[f"video_vat_{suffix}"], f"{name} vat {suffix}")
        clip = inputs["clips_tsm"]
        frames = clip.reshape(-1, *clip.shape[2:]).permute(0, 3, 1, 2)
        for endpoint in ("stem", "unit_0", "unit_2", "last_conv"):
            y = model.video(frames, clip.shape[1], final_endpoint=endpoint)
            y = y.permute(0, 2, 3, 1)[-2:, -3:, -3:, :16]
            official = "last_conv" if endpoint == "last_conv" else f"tsm_resnet_{endpoint}"
            want = golden[f"endpoint_{official}"]
            compare(y.reshape(1, -1), want.reshape(1, -1), f"{name} {endpoint}")


def test_text_matches(golden, inputs, model):
    ids = inputs["word_ids"].long()
    with torch.inference_mode():
        compare(model.text_embeddings(ids), golden["text_vat"], "text vat")
        compare(model.text_va_embeddings(ids), golden["text_va"], "text va")
