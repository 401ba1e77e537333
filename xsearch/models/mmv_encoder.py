"""The MMV encoder: video clips, 48 kHz sound and text -> rows of its two spaces side by side.

MMV (Alayrac et al., NeurIPS 2020) compares video and audio in one space (`va`) and text
with either in another (`vat`, reached from `va` by a further head). A row holds both parts,
each L2-normalised (the model's own similarity is the dot product; the unit parts make an
exact duplicate rank first): video and audio rows fill both, a text row only `vat`. Searches
keep, of a query, the part of the space the pairing meets in (xsearch/search/spaces.py).

Inputs, as the official evaluation prepares them: a clip of `frames` frames (32 at 10 fps),
RGB in [0, 1], cropped square; a still picture is a clip of itself repeated. Sound: a log-mel
spectrogram of the 48 kHz waveform (`mmv_frontend.py`: DMVR's defaults, which the JAX release
lacks); a longer sound is the normalised mean of its clip-length windows. Text: words mapped
by the vocabulary the converted checkpoint carries (none was released), padded to 16 ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from xsearch.errors import ParameterError, UsageError
from xsearch.media.audio import INT16_SCALE
from xsearch.models.batching import embed_in_windows
from xsearch.models.encoder import normalize_parts, normalize_rows
from xsearch.models.lazy_towers import LazyTowers
from xsearch.models.registry import raw_config, spec_for
from xsearch.models.spec import Encoder
from xsearch.models.weights import WeightsChoice

# On a CPU a batch of 8 clips ran at 1.0 s a clip against 0.75-0.8 s for 1 or 2 at a time
# (the activations of 8 clips, ~0.3 GB for one layer, fall out of every cache): clips run
# in chunks of this many there.
CPU_CLIP_CHUNK = 2


class MmvEncoder(LazyTowers, Encoder):
    """An MMV model (video clips, audio, text in its own space) as an Encoder."""

    def __init__(
        self,
        config_name: str,
        checkpoint: Path | None,
        device: Any = "cpu",
        batch_size: int = 8,
        seed: int = 0,
        precision: str = "fp32",
    ) -> None:
        """`checkpoint`: a file written by `xsearch model convert`; None means seeded random
        weights (`seed`). fp32 runs float32 (fp16 autocast on CUDA)."""
        from xsearch.models.mmv import mmv_config
        from xsearch.models.mmv_frontend import MmvAudioFrontend

        self.config = mmv_config(config_name)
        self.spec = spec_for(config_name)
        self.weights = WeightsChoice.given(checkpoint)
        self.checkpoint = self.weights.path
        self.device = str(device)
        if precision != "fp32":
            raise ParameterError("precision", f"{precision} is not available for MMV; use fp32")
        self.batch_size = batch_size
        self.seed = seed
        self.frontend = MmvAudioFrontend.from_config(raw_config(config_name)["audio"]["frontend"])
        assert self.spec.audio is not None and self.spec.image is not None
        self.clip_samples = round(self.spec.window_seconds * self.spec.audio.sample_rate)
        va, vat = self.spec.spaces
        self._va, self._vat = slice(va.start, va.stop), slice(vat.start, vat.stop)
        self._model: Any = None
        self._words: list[str] | None = None
        self._init_towers()

    # --- the model -------------------------------------------------------------------------

    def _built(self):
        """The model on the device (built once, whichever modality asks first)."""
        if self._model is None:
            import torch

            from xsearch.models.mmv import build_mmv, prepare_for_inference

            if self.checkpoint is None:
                with torch.random.fork_rng(devices=[]):  # the caller's RNG is left as it was
                    torch.manual_seed(self.seed)
                    model = build_mmv(self.config)
            else:
                from xsearch.models.mmv_checkpoint import load_mmv_state

                state, self._words = load_mmv_state(self.checkpoint, self.spec.config)
                model = build_mmv(self.config, device="meta")
                model.load_state_dict(state, strict=True, assign=True)
            self._model = prepare_for_inference(model.to(self.device).eval())
        return self._model

    def _autocast(self, device) -> AbstractContextManager:
        import torch

        if device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()

    def _load(self, modality: str) -> Callable[[list], np.ndarray]:
        import torch

        device = torch.device(self.device)
        model = self._built()
        if modality == "text":
            tokenizer = self._tokenizer()
        forward = {
            "image": model.video_embeddings,
            "audio": model.audio_embeddings,
            "text": model.text_embeddings,
        }[modality]

        def step(batch: list) -> np.ndarray:
            """One batch -> rows of both spaces (a text row's `va` part stays zero)."""
            rows = np.zeros((len(batch), self.dim), dtype=np.float32)
            if modality == "text":
                ids = torch.from_numpy(tokenizer.ids(batch, self.config.text_tokens))
                with torch.inference_mode(), self._autocast(device):
                    out = forward(ids.to(device)).float().cpu().numpy()
                rows[:, self._vat] = normalize_rows(out)
                return rows
            chunk = CPU_CLIP_CHUNK if modality == "image" and device.type == "cpu" else len(batch)
            for start in range(0, len(batch), chunk):
                inputs = torch.from_numpy(np.stack(batch[start : start + chunk])).to(device)
                with torch.inference_mode(), self._autocast(device):
                    va, vat = (o.float().cpu().numpy() for o in forward(inputs))
                part = slice(start, start + len(va))
                rows[part, self._va] = normalize_rows(va)
                rows[part, self._vat] = normalize_rows(vat)
            return rows

        return step

    def _tokenizer(self):
        from xsearch.models.mmv_tokenizer import WordTokenizer

        if self.checkpoint is None:  # random weights: any word has an embedding
            return WordTokenizer.hashed(self.config.vocab_size)
        if self._words is None:
            raise UsageError(
                f"model {self.spec.config} has no vocabulary (MMV's word list was not "
                "released): convert its weights with `xsearch model convert --vocab FILE`"
            )
        return WordTokenizer(self._words)

    # --- inputs ----------------------------------------------------------------------------

    def clip(self, item: Any) -> np.ndarray:
        """A clip as the model takes it, [frames, size, size, 3] float32 in [0, 1], from a
        uint8 clip, or a still picture (PIL, uint8 [h, w, 3] or the workers' prepared
        float32 [3, h, w]) repeated over the clip's frames."""
        image = self.spec.image
        assert image is not None
        if isinstance(item, np.ndarray) and item.ndim == 4:  # a clip, cropped by the decoder
            return item.astype(np.float32) / np.float32(255)
        if isinstance(item, np.ndarray) and item.dtype == np.float32:  # mean 0, std 1
            picture = item.transpose(1, 2, 0)
        else:
            from xsearch.media.image import crop_square

            pixels = item if isinstance(item, np.ndarray) else crop_square(item, image.size)
            picture = pixels.astype(np.float32) / np.float32(255)
        return np.broadcast_to(picture, (image.frames, *picture.shape)).copy()

    def log_mel(self, wave: np.ndarray) -> np.ndarray:
        """The audio tower's input for one window (a waveform at int16 scale); an empty one
        is a sample of silence (TensorFlow's frontend would give no frame at all)."""
        samples = np.asarray(wave, np.float32).reshape(-1) / np.float32(INT16_SCALE)
        return self.frontend.log_mel(samples if len(samples) else np.zeros(1, np.float32))

    # --- embedding -------------------------------------------------------------------------

    def embed_text(self, texts: Sequence[str | Sequence[str]]) -> np.ndarray:
        joined = [t if isinstance(t, str) else ", ".join(t) for t in texts]
        return self._in_batches("text", joined, lambda text: text)

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """Clips or still pictures -> [n, dim]."""
        return self._in_batches("image", images, self.clip)

    def _in_batches(self, modality: str, items: Sequence, prepare: Callable) -> np.ndarray:
        out = np.empty((len(items), self.dim), dtype=np.float32)
        if len(items):
            step = self._tower(modality)
            for start in range(0, len(items), self.batch_size):
                batch = items[start : start + self.batch_size]
                out[start : start + len(batch)] = step([prepare(item) for item in batch])
        return out

    def embed_audio(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Mono waveforms at 48 kHz, int16 scale, any lengths -> [n, dim]: per space, the
        normalised mean of the unit parts of each wave's clip-length windows."""
        if not len(waves):
            return np.zeros((0, self.dim), dtype=np.float32)
        step = self._tower("audio")

        def windows_rows(windows: list[np.ndarray]) -> np.ndarray:
            mels = [self.log_mel(w) for w in windows]
            rows = np.empty((len(mels), self.dim), dtype=np.float32)
            for length in {len(m) for m in mels}:  # a shorter last window runs on its own
                same = [i for i, m in enumerate(mels) if len(m) == length]
                rows[same] = step([mels[i] for i in same])
            return rows

        # the windows' rows are averaged whole, their parts weighing alike: each part is
        # the mean direction of the windows' parts once normalised again on its own
        rows = embed_in_windows(waves, self.clip_samples, self.batch_size, self.dim, windows_rows)
        return normalize_parts(rows, self.spec.spaces)
