"""The encoder interface: shapes, normalisation, order, batching invariance, preprocessing."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from xsearch.models.preprocess import (
    TextTruncatedWarning,
    image_tensor,
    join_labels,
    tokenize,
)


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(97, 64), (64, 120), (200, 150), (64, 64), (80, 300)]
    return [
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        for w, h in (sizes[i % len(sizes)] for i in range(n))
    ]


def _waves(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * 3000).astype(np.float32) for n in lengths]


def test_outputs_are_unit_rows_in_input_order(tiny_encoder):
    texts = ["a dog barking", "rain on a roof", "a dog barking"]
    vecs = tiny_encoder.embed_text(texts)
    assert vecs.shape == (3, 1024) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vecs[0], vecs[2], atol=1e-6)
    assert not np.allclose(vecs[0], vecs[1], atol=1e-3)


def test_batching_does_not_change_results(tiny_encoder):
    images = _images(5)
    together = tiny_encoder.embed_images(images)
    alone = np.concatenate([tiny_encoder.embed_images([im]) for im in images])
    assert np.abs(together - alone).max() < 1e-5

    waves = _waves([44100, 30000, 44100, 12345, 44100])
    together = tiny_encoder.embed_audio(waves)
    alone = np.concatenate([tiny_encoder.embed_audio([w]) for w in waves])
    assert np.abs(together - alone).max() < 1e-5


def test_text_positions_after_the_end_token_do_not_matter(tiny_encoder):
    tokens = tokenize(["a dog barking"])
    model = tiny_encoder.model
    padded = torch.zeros(1, 77, dtype=torch.long)
    padded[0, : tokens.shape[1]] = tokens[0]
    with torch.inference_mode():
        short, full = model.encode_text(tokens), model.encode_text(padded)
    assert torch.allclose(short, full, atol=1e-5)


def test_label_lists_are_joined_with_comma_space(tiny_encoder):
    assert join_labels(["dog", "bark"]) == "dog, bark"
    as_list = tiny_encoder.embed_text([["dog", "bark"]])
    as_text = tiny_encoder.embed_text(["dog, bark"])
    assert np.allclose(as_list, as_text)


def test_tokenizer_matches_clip_conventions():
    tokens = tokenize(["Hello World"])
    assert tokens[0, 0].item() == 49406 and tokens[0, -1].item() == 49407
    assert torch.equal(tokens, tokenize(["hello world"]))  # lower-cased


def test_long_text_is_truncated_with_a_warning():
    with pytest.warns(TextTruncatedWarning, match="truncated to 77 tokens"):
        tokens = tokenize(["word " * 200])
    assert tokens.shape == (1, 77)
    assert tokens[0, -1].item() == 49407
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenize(["short"])


def test_image_transform_is_clips():
    # A 2:1 image: short side to 224, centre crop, CLIP normalisation.
    left_red = np.zeros((100, 200, 3), np.uint8)
    left_red[:, :100] = (255, 0, 0)
    x = image_tensor([Image.fromarray(left_red)], 224)
    assert x.shape == (1, 3, 224, 224)
    red_mean, red_std = 0.48145466, 0.26862954
    assert x[0, 0, 112, 0].item() == pytest.approx((1 - red_mean) / red_std, abs=1e-4)
    assert x[0, 0, 112, 223].item() == pytest.approx((0 - red_mean) / red_std, abs=1e-4)


def test_audio_of_any_length_including_very_short(tiny_encoder):
    vecs = tiny_encoder.embed_audio(_waves([100, 1000, 44100 * 3]))
    assert vecs.shape == (3, 1024)
    assert np.isfinite(vecs).all()
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_silence_gives_a_finite_embedding(tiny_encoder):
    vec = tiny_encoder.embed_audio([np.zeros(44100, np.float32)])
    assert np.isfinite(vec).all()


def test_empty_inputs_give_empty_arrays(tiny_encoder):
    assert tiny_encoder.embed_text([]).shape == (0, 1024)
    assert tiny_encoder.embed_audio([]).shape == (0, 1024)
