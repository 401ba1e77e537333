"""Torch encoders: batches of texts, images or waveforms -> L2-normalised float32 rows.

The interface, `Encoder`, and what each model embeds, `EncoderSpec`, live in the torch-free
`xsearch.models.spec`; `AudioCLIPEncoder` implements them for AudioCLIP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from xsearch.models import preprocess
from xsearch.models.audioclip import AudioCLIP
from xsearch.models.config import spec_of
from xsearch.models.inference import prepare_for_inference
from xsearch.models.spec import Encoder

T = TypeVar("T")

# On a CPU the audio tower's activations (~9 MB per 5 s clip after the stem) fall out of the
# caches in larger batches: 2 clips at a time ran at 197 ms/clip, 8 at once at 236 ms/clip.
CPU_AUDIO_CHUNK = 2


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class TorchEncoder(Encoder):
    """An encoder whose model is a torch module: batching and normalisation shared."""

    def _run(
        self,
        items: Sequence[T],
        step: Callable[[Sequence[T]], torch.Tensor],
        key: Callable[[T], object] | None = None,
    ) -> np.ndarray:
        """Apply `step` to batches of `items` (grouped by `key`, so that a batch never mixes,
        say, audio lengths) and return the rows in input order, L2-normalised."""
        out = np.empty((len(items), self.dim), dtype=np.float32)
        order = sorted(range(len(items)), key=(lambda i: key(items[i])) if key else None)
        groups: list[list[int]] = []
        for i in order:
            same_key = groups and (key is None or key(items[groups[-1][0]]) == key(items[i]))
            if same_key and len(groups[-1]) < self.batch_size:
                groups[-1].append(i)
            else:
                groups.append([i])
        for group in groups:
            rows = step([items[i] for i in group]).float()
            out[group] = torch.nn.functional.normalize(rows, dim=-1).cpu().numpy()
        return out


class AudioCLIPEncoder(TorchEncoder):
    name = "audioclip"

    def __init__(
        self,
        model: AudioCLIP,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
        fp16: bool | None = None,
    ) -> None:
        self.device = torch.device(device)
        # fp16 autocast on CUDA by default; CPU stays float32 (no fast fp16 kernels there)
        self.fp16 = self.device.type == "cuda" if fp16 is None else fp16
        self.model = prepare_for_inference(model, self.device)
        self.config = model.config
        self.spec = spec_of(model.config)
        self.batch_size = batch_size

    def _context(self):
        if self.fp16:
            return torch.autocast(self.device.type, dtype=torch.float16)
        return nullcontext()

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str | Sequence[str]]) -> np.ndarray:
        ctx = self.config.text.context_length

        def step(batch: Sequence[str | Sequence[str]]) -> torch.Tensor:
            tokens = preprocess.tokenize(batch, ctx).to(self.device)
            with self._context():
                return self.model.encode_text(tokens)

        return self._run(list(texts), step)

    @torch.inference_mode()
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        size = self.config.vision.image_size

        def step(batch: Sequence[Image.Image]) -> torch.Tensor:
            x = preprocess.image_tensor(batch, size).to(self.device)
            x = x.contiguous(memory_format=torch.channels_last)
            with self._context():
                return self.model.encode_image(x)

        return self._run(list(images), step)

    @torch.inference_mode()
    def embed_audio(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        def step(batch: Sequence[np.ndarray]) -> torch.Tensor:
            x = preprocess.audio_tensor(batch).to(self.device)
            chunk = CPU_AUDIO_CHUNK if self.device.type == "cpu" else len(batch)
            with self._context():
                return torch.cat([self.model.encode_audio(part) for part in x.split(chunk)])

        # Padding would change the pooled features, so only equal lengths share a batch.
        return self._run(list(waves), step, key=len)
