"""CAV-MAE (xsearch/models/cav_mae*.py): the official checkpoint layout loads, strictly and
safely; the encoder embeds audio and images, refuses text, and its towers load lazily."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.cav_mae_recipe import make_checkpoint, read_key_list
from xsearch.errors import CheckpointError, UsageError
from xsearch.models import load_encoder
from xsearch.models.cav_mae import build_cav_mae, cav_mae_config
from xsearch.models.cav_mae_checkpoint import load_cav_mae_state
from xsearch.models.cav_mae_encoder import CavMaeEncoder

TINY = cav_mae_config("cav-mae-tiny")
FULL = cav_mae_config("cav-mae")


def tiny_file(tmp_path, seed=0, **changes):
    """A checkpoint of the tiny config in the official layout: `module.` keys, the MAE
    decoder's keys and the joint LayerNorm beside the encoder's."""
    torch.manual_seed(seed)
    state = {f"module.{k}": v for k, v in build_cav_mae(TINY).state_dict().items()}
    state["module.norm.weight"] = torch.ones(TINY.width)
    state["module.norm.bias"] = torch.zeros(TINY.width)
    state["module.mask_token"] = torch.zeros(1, 1, 16)
    state["module.decoder_blocks.0.attn.qkv.weight"] = torch.zeros(48, 16)
    state["module.decoder_pred_a.weight"] = torch.zeros(256, 16)
    state.update(changes)
    path = tmp_path / "tiny.pth"
    torch.save(state, path)
    return path


def test_the_official_key_list_is_the_encoder_plus_what_retrieval_drops():
    """Every encoder key of the full model is in the official file with its shape; the rest
    of the file is the decoder, the mask token and the joint LayerNorm."""
    official = {k.removeprefix("module."): s for k, (s, _) in read_key_list().items()}
    ours = {k: tuple(v.shape) for k, v in build_cav_mae(FULL, "meta").state_dict().items()}
    assert {k: official[k] for k in ours} == ours
    rest = set(official) - set(ours)
    assert rest and all(k.startswith(("decoder", "mask_token", "norm.")) for k in rest), rest


def test_a_seeded_official_checkpoint_loads(tmp_path):
    path = tmp_path / "audio_model.21.pth"
    torch.save(make_checkpoint(0), path)
    state = load_cav_mae_state(path, FULL)
    assert len(state) == len(build_cav_mae(FULL, "meta").state_dict())
    assert not any(k.startswith(("module.", "decoder", "mask_token", "norm.")) for k in state)


def test_the_tiny_layout_loads_and_gives_the_models_outputs(tmp_path):
    path = tiny_file(tmp_path, seed=3)
    torch.manual_seed(3)
    reference = build_cav_mae(TINY).eval()
    encoder = CavMaeEncoder("cav-mae-tiny", path)
    fbank = torch.randn(2, TINY.frames, TINY.mel_bins)
    pixels = torch.randn(2, 3, TINY.image_size, TINY.image_size)
    with torch.no_grad():
        audio = reference.audio_embedding(fbank).numpy()
        image = reference.image_embedding(pixels).numpy()
    np.testing.assert_allclose(encoder._tower("audio")(list(fbank.numpy())), audio, atol=1e-6)
    np.testing.assert_allclose(encoder._tower("image")(list(pixels.numpy())), image, atol=1e-6)
    assert encoder.loaded() == ("audio", "image")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"module.blocks_a.0.attn.qkv.weight": torch.zeros(3, 3)}, "mis-shaped"),
        ({"module.mlp_head.0.weight": torch.zeros(2, 2)}, "unexpected: mlp_head.0.weight"),
    ],
)
def test_a_checkpoint_of_another_shape_is_one_line(tmp_path, change, needle):
    path = tiny_file(tmp_path, **change)
    with pytest.raises(CheckpointError, match=needle) as caught:
        load_cav_mae_state(path, TINY)
    assert "\n" not in str(caught.value) and "not a cav-mae-tiny checkpoint" in str(caught.value)


def test_a_checkpoint_missing_the_encoder_is_refused(tmp_path):
    path = tmp_path / "decoder-only.pth"
    torch.save({"module.mask_token": torch.zeros(1, 1, 16)}, path)
    with pytest.raises(CheckpointError, match=r"missing: modality_a, .*\(112 in all\)"):
        load_cav_mae_state(path, TINY)


class _Runs:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_no_code_in_a_checkpoint_runs(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"module.patch_embed_a.proj.weight": torch.zeros(1), "x": _Runs()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_cav_mae_state(path, TINY)
    assert "must never run" not in capsys.readouterr().out
    path.write_bytes(pickle.dumps({"a": 1}))  # a plain pickle is no checkpoint either
    with pytest.raises(CheckpointError):
        load_cav_mae_state(path, TINY)


def test_the_encoder_embeds_audio_and_images_and_refuses_text():
    encoder = load_encoder("random", "cav-mae-tiny", device="cpu")
    assert encoder.spec.modalities == ("image", "audio") and encoder.dim == 32
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 3000 for n in (8000, 41200, 100_000)]
    audio = encoder.embed("audio", waves)
    pictures = [Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)) for _ in "ab"]
    image = encoder.embed("image", pictures)
    for rows in (audio, image):
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)
    assert audio[0] @ audio[1] < 0.9999  # distinct inputs, distinct vectors
    with pytest.raises(UsageError, match="embeds image, audio, not text"):
        encoder.embed("text", ["a dog"])
    assert encoder.loaded() == ("audio", "image")  # no text tower exists


def test_a_long_wave_is_the_mean_of_its_clip_windows():
    encoder = load_encoder("random", "cav-mae-tiny", device="cpu")
    rng = np.random.default_rng(1)
    clip = encoder.clip_samples
    first, second = (rng.standard_normal(clip).astype(np.float32) * 3000 for _ in "ab")
    both = encoder.embed("audio", [np.concatenate([first, second])])[0]
    parts = encoder.embed("audio", [first, second])
    mean = parts.sum(axis=0) / np.linalg.norm(parts.sum(axis=0))
    np.testing.assert_allclose(both, mean, atol=1e-6)


def test_the_fbank_is_cut_or_padded_to_the_clip_and_normalised():
    encoder = load_encoder("random", "cav-mae-tiny", device="cpu")
    short = encoder.fbank(np.full(8000, 0.1, np.float32))  # 48 frames, then zeros
    assert short.shape == (TINY.frames, TINY.mel_bins)
    padding = (0.0 - TINY.fbank_mean) / TINY.fbank_std
    np.testing.assert_allclose(short[48:], padding)
    assert not np.allclose(short[:48], padding)
    long = encoder.fbank(np.random.default_rng(2).standard_normal(80_000).astype(np.float32))
    assert long.shape == (TINY.frames, TINY.mel_bins)
