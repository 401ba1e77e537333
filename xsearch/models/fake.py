"""A torch-free encoder of any width and modality set, for tests and for trying the pipeline.

Equal inputs give equal vectors and different inputs (almost surely) different ones: each
vector is a seeded Gaussian draw keyed by a hash of the input's content. Nothing is learned, so
there is no cross-modal meaning, but everything around a model (decoding, batching, the store,
search, the server) runs as it does with a real one, without loading torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from xsearch.models.spec import AudioInput, Encoder, EncoderSpec, ImageInput, TextInput
from xsearch.models.weights import RANDOM, WeightsChoice


def fake_spec(
    dim: int = 64,
    modalities: Sequence[str] = ("image", "audio", "text"),
    sample_rate: int = 16_000,
    image_size: int = 32,
) -> EncoderSpec:
    """The spec of a fake model; its config name says its shape, e.g. fake-512-audio-text."""
    wanted = set(modalities)
    name = "fake-" + "-".join([str(dim), *(m for m in ("image", "audio", "text") if m in wanted)])
    return EncoderSpec(
        family="fake",
        config=name,
        dim=dim,
        image=ImageInput(image_size) if "image" in wanted else None,
        audio=AudioInput(sample_rate) if "audio" in wanted else None,
        text=TextInput(77) if "text" in wanted else None,
    )


class FakeEncoder(Encoder):
    name = "fake"
    device = "cpu"

    def __init__(self, spec: EncoderSpec | None = None, batch_size: int = 16) -> None:
        self.spec = spec or fake_spec()
        self.batch_size = batch_size
        self.weights = WeightsChoice(None, RANDOM)
        self.calls: dict[str, int] = {}  # model calls per modality, for tests

    def _vectors(self, modality: str, keys: list[bytes]) -> np.ndarray:
        self.spec.require(modality)
        self.calls[modality] = self.calls.get(modality, 0) + 1
        out = np.empty((len(keys), self.dim), dtype=np.float32)
        for row, key in enumerate(keys):
            seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            out[row] = v / np.linalg.norm(v)
        return out

    def embed_text(self, texts: Sequence[str | Sequence[str]]) -> np.ndarray:
        joined = [t if isinstance(t, str) else ", ".join(t) for t in texts]
        return self._vectors("text", [b"text:" + t.encode() for t in joined])

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """Keyed by the picture as a model sees it (resized, centre-cropped and normalised to
        the spec's input, as ingest's workers already deliver it), so a query picture finds
        its indexed self."""
        from PIL import Image

        from xsearch.media.image import crop_square, model_input

        self.spec.require("image")
        assert self.spec.image is not None
        image = self.spec.image

        def seen(item: Any) -> np.ndarray:
            if isinstance(item, np.ndarray) and item.dtype == np.float32:
                return item  # prepared by a decode worker
            picture = item if isinstance(item, Image.Image) else Image.fromarray(item)
            return model_input(crop_square(picture, image.size), image.mean, image.std)

        return self._vectors("image", [b"image:" + seen(i).tobytes() for i in images])

    def embed_audio(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        keys = [b"audio:" + np.asarray(w, dtype=np.float32).tobytes() for w in waves]
        return self._vectors("audio", keys)
