"""Turning raw inputs into model tensors, exactly as AudioCLIP was trained and evaluated."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

# The tokenizer lives beside the torch-free text path; these names stay importable from here.
from xsearch.models.clip_tokenizer import TextTruncatedWarning as TextTruncatedWarning
from xsearch.models.clip_tokenizer import join_labels as join_labels
from xsearch.models.clip_tokenizer import token_rows
from xsearch.models.spec import CLIP_MEAN, CLIP_STD

if TYPE_CHECKING:
    from torchvision import transforms


def tokenize(texts: Sequence[str | Sequence[str]], context_length: int = 77) -> torch.Tensor:
    """Token ids [n, L] (`token_rows` as one tensor), L the longest used length (at most
    `context_length`), zero after each end token.

    Positions past every end token are dropped: the text tower is causal and reads the end
    token, so they cannot change the embedding.
    """
    rows = token_rows(texts, context_length)
    out = torch.zeros(len(rows), max((len(r) for r in rows), default=2), dtype=torch.long)
    for i, ids in enumerate(rows):
        out[i, : len(ids)] = torch.tensor(ids)
    return out


@cache
def image_transform(size: int) -> transforms.Compose:
    """CLIP's evaluation transform: bicubic resize of the short side, centre crop, normalise.
    torchvision is imported here, on first use: it costs seconds that a model never given a
    PIL image need not pay."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )


def image_tensor(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """RGB PIL images -> [n, 3, size, size] float32."""
    transform = image_transform(size)
    return torch.stack([transform(im.convert("RGB")) for im in images])


def audio_tensor(waves: Sequence[np.ndarray]) -> torch.Tensor:
    """Equal-length mono waveforms (int16 scale) -> [n, samples] float32."""
    return torch.from_numpy(np.stack([np.asarray(w, dtype=np.float32) for w in waves]))


def image_batch(images: Sequence[Image.Image | np.ndarray], size: int) -> torch.Tensor:
    """Images -> [n, 3, size, size] float32: arrays were prepared already (by the decode
    workers, see `xsearch.media.image.model_input`); PIL images are resized, cropped and
    normalised here the same way (equal to `image_transform` to the bit, without torchvision)."""
    from xsearch.media.image import crop_square, model_input

    def prepared(im: Image.Image | np.ndarray) -> np.ndarray:
        if isinstance(im, np.ndarray):
            return im
        return model_input(crop_square(im, size), CLIP_MEAN, CLIP_STD)

    rows = [prepared(im) for im in images]
    return torch.from_numpy(np.stack(rows))
