"""Turning raw inputs into model tensors, exactly as AudioCLIP was trained and evaluated."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cache

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

# CLIP's image normalisation (OpenAI's dataset statistics)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class TextTruncatedWarning(UserWarning):
    """A text was longer than the model's context and was cut."""


def join_labels(text: str | Sequence[str]) -> str:
    """A label list becomes one text, joined with ', ' as AudioCLIP encodes a label set."""
    return text if isinstance(text, str) else ", ".join(text)


@cache
def _tokenizer():
    from open_clip.tokenizer import SimpleTokenizer  # ships the CLIP BPE vocabulary

    return SimpleTokenizer()


def tokenize(texts: Sequence[str | Sequence[str]], context_length: int = 77) -> torch.Tensor:
    """Token ids [n, L], L the longest used length (at most `context_length`).

    Positions past every end token are dropped: the text tower is causal and reads the end
    token, so they cannot change the embedding. Over-long texts keep their first
    `context_length - 1` tokens plus the end token, with a warning.
    """
    tok = _tokenizer()
    rows = []
    for text in texts:
        text = join_labels(text)
        ids = [tok.sot_token_id, *tok.encode(text), tok.eot_token_id]
        if len(ids) > context_length:
            preview = text if len(text) <= 40 else text[:37] + "..."
            warnings.warn(
                f"text truncated to {context_length} tokens: {preview!r}",
                TextTruncatedWarning,
                stacklevel=2,
            )
            ids = [*ids[: context_length - 1], tok.eot_token_id]
        rows.append(ids)
    out = torch.zeros(len(rows), max((len(r) for r in rows), default=2), dtype=torch.long)
    for i, ids in enumerate(rows):
        out[i, : len(ids)] = torch.tensor(ids)
    return out


@cache
def image_transform(size: int) -> transforms.Compose:
    """CLIP's evaluation transform: bicubic resize of the short side, centre crop, normalise."""
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
