"""The CAV-MAE encoder: 16 kHz waveforms and pictures -> 768-d unit rows; no text.

Each tower (audio, image) is built the first time its modality is embedded, from the
checkpoint (only its tensors, memory-mapped) or from seeded random weights.

Audio, as the official loader prepares a clip: the waveform in [-1, 1] less its mean, Kaldi's
log mel filterbank (kaldi_fbank.py), zero-padded or cut to the clip's frames (1024, 10.24 s
of frames: 10.255 s of samples), then (x - mean) / std with the dataset's statistics. A
longer waveform is cut into consecutive clip-length windows whose unit vectors are averaged
and normalised again (the official code takes the first 10 s only; this sees the whole file).
Images: bicubic resize of the short side to 224, centre crop, ImageNet mean and std, as the
official loader; decode workers prepare them so, and PIL images are prepared here the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from xsearch.errors import ParameterError
from xsearch.media.audio import INT16_SCALE
from xsearch.models.batching import batches, embed_in_windows
from xsearch.models.cav_mae import TOWER_PREFIXES, cav_mae_config
from xsearch.models.encoder import normalize_rows
from xsearch.models.lazy_towers import LazyTowers
from xsearch.models.registry import spec_for
from xsearch.models.spec import Encoder
from xsearch.models.weights import WeightsChoice


class CavMaeEncoder(LazyTowers, Encoder):
    """A CAV-MAE model (audio and image) as an Encoder."""

    def __init__(
        self,
        config_name: str,
        checkpoint: Path | None,
        device: Any = "cpu",
        batch_size: int = 16,
        seed: int = 0,
        precision: str = "fp32",
    ) -> None:
        """`checkpoint` None means seeded random weights (`seed`). fp32 runs float32 (fp16
        autocast on CUDA, as the official retrieval script runs); bf16 a bfloat16 autocast."""
        self.config = cav_mae_config(config_name)
        self.spec = spec_for(config_name)
        self.weights = WeightsChoice.given(checkpoint)
        self.checkpoint = self.weights.path
        self.device = str(device)
        if precision not in ("fp32", "bf16"):
            raise ParameterError(
                "precision", f"{precision} is not available for CAV-MAE; use fp32 or bf16"
            )
        self.precision = precision
        self.batch_size = batch_size
        self.seed = seed
        self.clip_samples = round(self.spec.window_seconds * self.config.sample_rate)
        self._init_towers()

    # --- towers ----------------------------------------------------------------------------

    def _model(self, modality: str):
        """The model with `modality`'s tower on the device; the other tower's tensors stay on
        the meta device (not read, not allocated)."""
        import torch

        from xsearch.models.cav_mae import build_cav_mae

        if self.checkpoint is None:
            with torch.random.fork_rng(devices=[]):  # the caller's RNG is left as it was
                torch.manual_seed(self.seed)
                model = build_cav_mae(self.config)
        else:
            from xsearch.models.cav_mae_checkpoint import load_cav_mae_state

            state = load_cav_mae_state(self.checkpoint, self.config)
            model = build_cav_mae(self.config, device="meta")
            mine = {k: v for k, v in state.items() if k.startswith(TOWER_PREFIXES[modality])}
            model.load_state_dict(mine, strict=False, assign=True)
        own = TOWER_PREFIXES[modality]
        for name, parameter in model.named_parameters():  # the other tower stays where it is
            if name.startswith(own):
                parameter.data = parameter.data.to(self.device)
        return model.eval()

    def _autocast(self, device) -> AbstractContextManager:
        import torch

        if self.precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        if device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()

    def _load(self, modality: str) -> Callable[[list], np.ndarray]:
        import torch

        device = torch.device(self.device)
        model = self._model(modality)
        forward = model.audio_embedding if modality == "audio" else model.image_embedding

        def step(batch: list) -> np.ndarray:
            with torch.inference_mode(), self._autocast(device):
                inputs = torch.from_numpy(np.stack(batch)).to(device)
                return forward(inputs).float().cpu().numpy()

        return step

    # --- inputs ----------------------------------------------------------------------------

    def fbank(self, wave: np.ndarray) -> np.ndarray:
        """The model's input [frames, mel_bins] for one clip (a waveform in [-1, 1])."""
        import torch

        from xsearch.models.kaldi_fbank import fbank

        config = self.config
        signal = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        features = fbank(signal - signal.mean(), config.sample_rate, config.mel_bins)
        out = torch.zeros((config.frames, config.mel_bins))
        kept = features[: config.frames]
        out[: len(kept)] = kept
        return ((out - config.fbank_mean) / config.fbank_std).numpy()

    def pixels(self, image: Any) -> np.ndarray:
        """A picture as the model takes it: arrays come prepared by the decode workers."""
        if isinstance(image, np.ndarray):
            return image
        from xsearch.media.image import crop_square, model_input

        spec = self.spec.image
        assert spec is not None
        return model_input(crop_square(image, spec.size), spec.mean, spec.std)

    # --- embedding -------------------------------------------------------------------------

    def embed_text(self, texts: Sequence[str | Sequence[str]]) -> np.ndarray:
        self.spec.require("text")
        raise AssertionError("unreachable: CAV-MAE embeds no text")  # pragma: no cover

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        out = np.empty((len(images), self.dim), dtype=np.float32)
        if not len(images):
            return out
        step = self._tower("image")
        start = 0
        for batch in batches(images, self.batch_size):
            out[start : start + len(batch)] = normalize_rows(step([self.pixels(i) for i in batch]))
            start += len(batch)
        return out

    def embed_audio(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Mono waveforms at 16 kHz, int16 scale, any lengths -> [n, dim]: the normalised
        mean of the unit vectors of each wave's clip-length windows."""
        if not len(waves):
            return np.zeros((0, self.dim), dtype=np.float32)
        step = self._tower("audio")
        return embed_in_windows(
            waves,
            self.clip_samples,
            self.batch_size,
            self.dim,
            lambda windows: step(
                [self.fbank(np.asarray(w, np.float32) / INT16_SCALE) for w in windows]
            ),
        )
