"""The torch-free fake model the model-agnostic suites run with: any width and modality set,
equal vectors for equal content, and the three shapes those suites use."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.cli import ROOT
from xsearch.errors import UsageError


@pytest.mark.parametrize(
    ("shape", "dim", "modalities", "rate", "size"),
    [
        ("audioclip-like", 1024, ("image", "audio", "text"), 44_100, 224),
        ("512-audio-text", 512, ("audio", "text"), 48_000, None),
        ("768-audio-image", 768, ("image", "audio"), 16_000, 48),
    ],
)
def test_the_suites_shapes(fake_encoder, shape, dim, modalities, rate, size):
    encoder = fake_encoder(shape)
    assert (encoder.dim, encoder.modalities, encoder.sample_rate) == (dim, modalities, rate)
    assert (encoder.spec.image.size if encoder.spec.image else None) == size
    assert encoder.spec.widths == {m: dim for m in modalities}


def test_vectors_are_unit_rows_equal_for_equal_content(fake_encoder):
    encoder = fake_encoder(dim=96, modalities=("audio", "text"), sample_rate=8_000)
    texts = encoder.embed("text", ["rain", "dog", "rain"])
    assert texts.shape == (3, 96) and texts.dtype == np.float32
    assert np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(texts[0], texts[2]) and abs(float(texts[0] @ texts[1])) < 0.5
    wave = np.sin(np.arange(8_000, dtype=np.float32))
    again = fake_encoder(dim=96, modalities=("audio", "text"), sample_rate=8_000)
    assert np.array_equal(encoder.embed("audio", [wave]), again.embed("audio", [wave.copy()]))
    assert encoder.calls == {"text": 1, "audio": 1}


def test_a_modality_the_fake_lacks_is_one_line(fake_encoder):
    encoder = fake_encoder("512-audio-text")
    with pytest.raises(UsageError) as refused:
        encoder.embed("image", [np.zeros((4, 4, 3), np.uint8)])
    assert str(refused.value) == "model fake-512-audio-text embeds audio, text, not image"
    with pytest.raises(TypeError):
        fake_encoder("512-audio-text", dim=3)  # a shape or a spec's fields, not both


def test_the_fake_loads_without_torch():
    code = (
        "import sys; from xsearch.models.fake import FakeEncoder; "
        "FakeEncoder().embed('text', ['x']); "
        "assert 'torch' not in sys.modules, 'the fake imported torch'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_a_query_picture_finds_its_indexed_self(fake_media_index):
    """Ingest crops pictures to the model's size; a query picture is cropped the same way."""
    from pathlib import Path

    index = fake_media_index("768-audio-image")
    sky = next(a["path"] for a in index.store.assets.to_pylist() if a["path"].endswith("sky.png"))
    hits = index.search(image=sky, target="image", k=1)
    assert Path(hits[0].path).name == "sky.png" and abs(hits[0].cosine - 1.0) < 1e-5
