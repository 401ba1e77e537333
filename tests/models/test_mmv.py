"""MMV (xsearch/models/mmv.py, mmv_params.py): the configs, TF 'SAME' padding, space-to-depth,
TSM's temporal shift, the towers' shapes on tiny configs (S3D-G and TSM-ResNet), and the
official parameter tree converted strictly (a written .pkl read back safely, one-line errors
for a missing, misshapen or unexpected entry)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.helpers.mmv_recipe import make_inputs, make_tree, write_official_pkl
from xsearch.errors import CheckpointError
from xsearch.models.mmv import (
    SameMaxPool,
    build_mmv,
    mmv_config,
    same_pads,
    space_to_depth,
    temporal_shift,
)
from xsearch.models.mmv_params import (
    HEADS,
    TSM,
    VIDEO,
    expected_haiku_keys,
    state_dict_from_haiku,
)
from xsearch.models.pickled_params import read_pickled_params

TINY = mmv_config("mmv-tiny")
FULL = mmv_config("mmv-s3d")
TINY_TSM = dataclasses.replace(
    TINY,
    name="mmv-tiny-tsm",
    video_backbone="tsm-resnet50",
    video_stem_width=8,
    video_widths=(16, 32, 64, 128),
    video_blocks=(1, 2, 1, 1),
    video_shift_fraction=0.125,
    video_dim=128,
)


@pytest.fixture(scope="module")
def tiny_tree():
    return make_tree(TINY)


@pytest.fixture(scope="module")
def tiny_model(tiny_tree):
    model = build_mmv(TINY)
    model.load_state_dict(state_dict_from_haiku(tiny_tree, TINY), strict=True)
    return model


def test_the_configs():
    assert (FULL.va_width, FULL.vat_width, FULL.video_dim, FULL.audio_dim) == (512, 256, 1024, 2048)
    assert (FULL.vocab_size, FULL.word_dim, FULL.context_length, FULL.sentence_dim) == (
        65536,
        300,
        16,
        2048,
    )
    assert FULL.bn_eps == 1e-5 and FULL.audio_blocks == (3, 4, 6, 3)
    assert (TINY.va_width, TINY.vat_width, TINY.video_dim) == (32, 16, 128)
    assert mmv_config("mmv-s3d") is FULL  # cached


@pytest.mark.parametrize(
    "name, arrays, params, state",
    [
        ("mmv-s3d", 1243, 57_509_968, 138_432),
        ("mmv-tsm-resnet50", 930, 72_388_608, 187_082),
        ("mmv-tsm-resnet50x2", 930, 143_828_544, 277_962),
    ],
)
def test_the_full_key_lists_have_the_official_sizes(name, arrays, params, state):
    """The official models' inits (listed by running them) hold these many arrays,
    parameters and state elements."""
    keys = expected_haiku_keys(mmv_config(name))
    assert len(keys) == arrays
    count = {"params": 0, "state": 0}
    for (collection, _, _), (shape, _) in keys.items():
        count[collection] += int(np.prod(shape))
    assert count == {"params": params, "state": state}


def test_the_official_key_names():
    keys = expected_haiku_keys(FULL)
    assert keys[("params", f"{VIDEO}/Conv2d_1a_7x7/~/conv3_d", "w")] == (
        (2, 4, 4, 24, 64),
        "float32",
    )
    bn = f"{HEADS}/vis_embd/__cross_replica_batch_norm"
    assert keys[("state", f"{bn}/~/var_ema", "counter")] == ((), "int32")
    tsm = expected_haiku_keys(mmv_config("mmv-tsm-resnet50x2"))
    assert tsm[("params", f"{TSM}/tsm_resnet_stem", "w")] == ((7, 7, 3, 128), "float32")
    inner = ("params", f"{HEADS}/vid2audio_embd/final_projection_inner", "w")
    assert tsm[inner] == ((4096, 512), "float32")


@pytest.mark.parametrize(
    "size, kernel, stride, want",
    [
        (224, 7, 2, [2, 3]),  # the extra pad goes at the end
        (56, 3, 2, [0, 1]),
        (75, 3, 2, [1, 1]),
        (16, 2, 1, [0, 1]),
        (5, 2, 2, [0, 1]),
        (6, 2, 2, [0, 0]),
        (7, 1, 1, [0, 0]),
    ],
)
def test_same_padding(size, kernel, stride, want):
    assert same_pads((size,), (kernel,), (stride,)) == want


def test_same_max_pool_pads_with_minus_infinity():
    x = -1.0 - torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    y = SameMaxPool((3, 3), (2, 2))(x)
    assert y.shape == (1, 2, 2, 2)
    assert (y < -0.5).all()  # zeros padded in would win here
    assert y[0, 0, 1, 1] == x[0, 0, 2:, 2:].max()


def test_temporal_shift_moves_channels_as_the_official_code():
    """Frame t of a 4-frame clip holds channels 100 t + c (16 channels: 2 shift each way).
    Channels [0, 2) come from frame t + 1's last two, the last two from frame t - 1's first
    two (positions change, unlike the usual PyTorch TSM), zeros past the ends."""
    x = (100 * torch.arange(4)[:, None] + torch.arange(16)[None, :]).float()
    y = temporal_shift(x[:, :, None, None].repeat(2, 1, 1, 1), 4, 0.125)[:4, :, 0, 0]
    assert y[1].tolist() == [214, 215, *range(102, 114), 0, 1]
    assert y[0].tolist() == [114, 115, *range(2, 14), 0, 0]
    assert y[3].tolist() == [0, 0, *range(302, 314), 200, 201]


def test_tiny_tsm_runs_and_converts(tmp_path):
    tree = make_tree(TINY_TSM)
    assert f"{TSM}/tsm_resnet_unit_1/block_1/conv_2" in tree["params"]
    assert f"{TSM}/tsm_resnet_unit_0/block_0/shortcut_conv" in tree["params"]
    model = build_mmv(TINY_TSM)
    path = write_official_pkl(tree, tmp_path / "tsm.pkl")
    model.load_state_dict(state_dict_from_haiku(read_pickled_params(path), TINY_TSM), strict=True)
    clips = torch.rand(2, 5, 33, 29, 3, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        va, vat = model.video_embeddings(clips)  # any T, H, W: no space-to-depth
        assert va.shape == (2, 32) and vat.shape == (2, 16)
        torch.testing.assert_close(model.video_embeddings(clips[1:])[0][0], va[1])
        still = clips[:, :1].repeat(1, 5, 1, 1, 1)  # the shift brings in zeros at the ends
        frame = model.video.clips(still[:, :1])
        assert not torch.allclose(model.video.clips(still), frame, atol=1e-4)


def test_space_to_depth_channel_order():
    clips = torch.arange(2 * 4 * 4 * 3, dtype=torch.float32).reshape(1, 2, 4, 4, 3)
    x = space_to_depth(clips)  # [1, 24, 1, 2, 2]
    assert x.shape == (1, 24, 1, 2, 2)
    for dt in range(2):
        for dh in range(2):
            for dw in range(2):
                for c in range(3):
                    channel = dt * 12 + dh * 6 + dw * 3 + c
                    assert x[0, channel, 0, 1, 0] == clips[0, dt, 2 + dh, dw, c]


def test_tiny_shapes_and_batch_independence(tiny_model):
    g = torch.Generator().manual_seed(0)
    clips = torch.rand(3, TINY.frames, TINY.image_size, TINY.image_size, 3, generator=g)
    mels = torch.randn(2, 40, 16, generator=g)
    ids = torch.randint(0, TINY.vocab_size, (2, TINY.context_length), generator=g)
    with torch.inference_mode():
        va, vat = tiny_model.video_embeddings(clips)
        assert va.shape == (3, 32) and vat.shape == (3, 16) and va.dtype == torch.float32
        one_va, one_vat = tiny_model.video_embeddings(clips[1:2])
        torch.testing.assert_close(one_va[0], va[1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(one_vat[0], vat[1], rtol=1e-5, atol=1e-6)
        ava, avat = tiny_model.audio_embeddings(mels)
        assert ava.shape == (2, 32) and avat.shape == (2, 16)
        assert tiny_model.audio_embeddings(torch.randn(1, 33, 16, generator=g))[0].shape == (1, 32)
        assert tiny_model.text_embeddings(ids).shape == (2, 16)
        assert tiny_model.text_va_embeddings(ids).shape == (2, 32)
        assert not torch.allclose(va[0], va[1])


def test_audio_vat_goes_through_the_video_vat_head(tiny_model):
    """fac_relu: va -> vat is one module, ReLU, Linear, BN, for video and audio alike."""
    mels = torch.randn(2, 24, 16, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        va, vat = tiny_model.audio_embeddings(mels)
        heads = tiny_model.heads
        torch.testing.assert_close(heads.va_vat_bn(heads.va_vat(torch.relu(va))), vat)


def test_text_takes_the_maximum_over_every_token_pads_included(tiny_model):
    ids = torch.tensor([[5, 7] + [0] * 14, [5, 7] + [1] * 14])
    with torch.inference_mode():
        out = tiny_model.text_embeddings(ids)
        alone = tiny_model.text_embeddings(ids[:1, :2])
    assert not torch.allclose(out[0], out[1])  # the pad id matters: no mask
    assert not torch.allclose(out[0], alone[0])


def test_bad_inputs_are_refused(tiny_model):
    with pytest.raises(ValueError, match="even"):
        tiny_model.video_embeddings(torch.rand(1, 7, 32, 32, 3))
    with pytest.raises(ValueError, match=r"\[B, T, H, W, 3\]"):
        tiny_model.video_embeddings(torch.rand(1, 8, 32, 32))
    with pytest.raises(ValueError, match="word ids"):
        tiny_model.text_embeddings(torch.full((1, 16), TINY.vocab_size))
    with pytest.raises(ValueError, match="log_mel"):
        tiny_model.audio_embeddings(torch.randn(1, 1, 40, 16))


def test_a_written_pkl_converts_to_the_same_state(tmp_path, tiny_tree, tiny_model):
    path = write_official_pkl(tiny_tree, tmp_path / "mmv_tiny.pkl")
    read = read_pickled_params(path)
    state = state_dict_from_haiku(read, TINY)
    model = build_mmv(TINY)
    model.load_state_dict(state, strict=True)
    loaded = model.state_dict()
    for key, value in tiny_model.state_dict().items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    # layouts: Conv3D [kt, kh, kw, in, out] -> [out, in, kt, kh, kw]; Linear [in, out] -> [out, in]
    w = tiny_tree["params"][f"{VIDEO}/Conv2d_2c_3x3/~/conv3_d_1"]["w"]
    got = state["video.layers.Conv2d_2c_3x3.convs.1.weight"]
    np.testing.assert_array_equal(got.numpy(), w.transpose(4, 3, 0, 1, 2))
    w = tiny_tree["params"][f"{HEADS}/vis_embd/final_projection"]["w"]
    np.testing.assert_array_equal(state["heads.va_vat.weight"].numpy(), w.T)
    mean = tiny_tree["state"][f"{HEADS}/vis_embd/__cross_replica_batch_norm/~/mean_ema"]["average"]
    np.testing.assert_array_equal(state["heads.va_vat_bn.running_mean"].numpy(), mean[0])
    inputs = make_inputs(vocab_size=TINY.vocab_size)
    with torch.inference_mode():
        torch.testing.assert_close(
            model.text_embeddings(torch.from_numpy(inputs["word_ids"]).long()),
            tiny_model.text_embeddings(torch.from_numpy(inputs["word_ids"]).long()),
        )


def _copy(tree):
    return {c: {m: dict(leaves) for m, leaves in tree[c].items()} for c in tree}


def _one_line_error(tree, *needles):
    with pytest.raises(CheckpointError) as info:
        state_dict_from_haiku(tree, TINY)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def test_a_missing_key_is_one_line(tiny_tree):
    tree = _copy(tiny_tree)
    module = f"{VIDEO}/Mixed_4b/Branch_1_Conv2d_0b_3x3/self_gating"
    del tree["params"][module]["b"]
    _one_line_error(tree, "missing", f"{module}/b")
    del tree["state"][f"{HEADS}/vis_embd/__cross_replica_batch_norm/~/mean_ema"]
    _one_line_error(tree, "missing", "and 3 more")


def test_a_wrong_shape_is_one_line(tiny_tree):
    tree = _copy(tiny_tree)
    module = f"{VIDEO}/Conv2d_1a_7x7/~/conv3_d"
    tree["params"][module]["w"] = np.zeros((7, 7, 7, 3, 8), np.float32)  # the raw-RGB stem
    _one_line_error(tree, f"{module}/w", "(7, 7, 7, 3, 8)", "expected (2, 4, 4, 24, 8)")


def test_an_extra_key_is_one_line(tiny_tree):
    tree = _copy(tiny_tree)
    tree["params"][f"{HEADS}/vis_embd/final_projection"]["extra"] = np.zeros(3, np.float32)
    _one_line_error(tree, "unexpected", "vis_embd/final_projection/extra")
    tree = _copy(tiny_tree)
    tree["opt_state"] = {}
    _one_line_error(tree, "unexpected top-level entry 'opt_state'")
    _one_line_error([tiny_tree], "list")


def test_unused_entries_are_checked_then_left_out(tiny_tree):
    """EMA hidden values and counters, and the audio2txt head (optional), are not loaded."""
    tree = _copy(tiny_tree)
    del tree["params"][f"{HEADS}/audio2txt_embd/final_projection"]
    state = state_dict_from_haiku(tree, TINY)
    assert not any("audio2txt" in k or "hidden" in k for k in state)
    tree["state"][f"{HEADS}/vis_embd/__cross_replica_batch_norm/~/var_ema"]["hidden"] = np.zeros(3)
    _one_line_error(tree, "var_ema/hidden", "expected (1, 16)")
