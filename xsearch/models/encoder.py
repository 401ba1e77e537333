"""The AudioCLIP encoder: batches of texts, images or waveforms -> L2-normalised float32 rows.

The interface, `Encoder`, and what each model embeds, `EncoderSpec`, live in the torch-free
`xsearch.models.spec`. `AudioCLIPEncoder` loads each tower when it is first needed, from the
tower cache (`tower_cache.py`): a text query loads the text tower only, and on a CPU runs it
in NumPy (`text_numpy.py`), so it never imports torch. Images and audio run in torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from xsearch.errors import CheckpointError
from xsearch.models.config import get_config, spec_of
from xsearch.models.lazy_towers import LazyTowers
from xsearch.models.spec import Encoder, Space
from xsearch.models.tower_cache import Tower, TowerSource

if TYPE_CHECKING:
    from xsearch.models.audioclip import AudioCLIP

T = TypeVar("T")

# On a CPU the audio tower's activations (~9 MB per 5 s clip after the stem) fall out of the
# caches in larger batches: 2 clips at a time ran at 197 ms/clip, 8 at once at 236 ms/clip.
CPU_AUDIO_CHUNK = 2
# A query's few tokens make matrix products too small to share: under load, OpenBLAS's second
# thread made one 3-token layer 5-40x slower than a single thread.
ONE_THREAD_TOKENS = 64


def normalize_rows(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, np.float32(1e-12))


def normalize_parts(rows: np.ndarray, spaces: Sequence[Space] = ()) -> np.ndarray:
    """`rows` with each space's part L2-normalised (a zero part stays zero): the rows of a
    model of several spaces (see EncoderSpec.spaces); the whole rows for a model of one."""
    if not spaces:
        return normalize_rows(rows)
    out = np.zeros_like(rows, dtype=np.float32)
    for space in spaces:
        out[:, space.start : space.stop] = normalize_rows(rows[:, space.start : space.stop])
    return out


class AudioCLIPEncoder(LazyTowers, Encoder):
    """AudioCLIP's three towers, each loaded on first use.

    Built from a `TowerSource` (what `load_encoder` does: cached towers of a checkpoint or
    of seeded random weights), or from an AudioCLIP model in memory, whose BatchNorms are
    folded in place (the model belongs to the encoder from then on)."""

    name = "audioclip"

    def __init__(
        self,
        model: AudioCLIP | TowerSource,
        device: Any = "cpu",
        batch_size: int = 16,
        fp16: bool | None = None,
        precision: str = "fp32",
    ) -> None:
        if isinstance(model, TowerSource):
            self.source, self.model = model, None
        else:
            self.source, self.model = _memory_source(model), model
        self.config = get_config(self.source.config)
        self.spec = spec_of(self.config)
        self.device = str(device)
        self.on_gpu = self.device.startswith("cuda")
        # fp16 autocast on CUDA by default; CPU stays float32 unless asked (see precision.py)
        self.fp16 = self.on_gpu if fp16 is None else fp16
        from xsearch.models.precision import check_precision

        self.precision = check_precision(precision, "cuda" if self.on_gpu else "cpu")
        self.batch_size = batch_size
        self._init_towers()

    # --- towers ----------------------------------------------------------------------------

    def _load(self, modality: str) -> Callable[[list], np.ndarray]:
        tower = self.source.tower(modality)  # one tower per modality, named alike
        try:
            if modality == "text" and not self.on_gpu and self.precision == "fp32":
                return _numpy_text(self.config, tower)
            return _torch_step(self, modality, tower)
        except (RuntimeError, ValueError) as err:  # a tower that does not fit its config
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(
                f"{self.source.folder}: unusable {modality} tower ({first})"
            ) from None

    # --- embedding -------------------------------------------------------------------------

    def _run(
        self,
        items: Sequence[T],
        step: Callable[[list], np.ndarray],
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
            out[group] = normalize_rows(step([items[i] for i in group]))
        return out

    def embed_text(self, texts: Sequence[str | Sequence[str]]) -> np.ndarray:
        return self._run(list(texts), self._tower("text"))

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """PIL images, or arrays already prepared by `media.image.model_input` -> rows."""
        return self._run(list(images), self._tower("image"))

    def embed_audio(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        # Padding would change the pooled features, so only equal lengths share a batch.
        return self._run(list(waves), self._tower("audio"), key=len)


def _memory_source(model: AudioCLIP) -> TowerSource:
    from xsearch.models.towers import derive_towers

    return TowerSource(model.config.name, "memory", lambda: derive_towers(model), keep=False)


def _numpy_text(config, tower: Tower) -> Callable[[list], np.ndarray]:
    from threadpoolctl import threadpool_limits

    from xsearch.models.clip_tokenizer import token_rows
    from xsearch.models.text_numpy import NumpyTextTower

    text = NumpyTextTower(tower.arrays, heads=config.text.heads)
    context = config.text.context_length

    def step(batch: list) -> np.ndarray:
        # Each distinct text once (labels repeat across files): equal texts, equal rows.
        rows = token_rows(batch, context)
        distinct = list(dict.fromkeys(map(tuple, rows)))
        small = sum(map(len, distinct)) <= ONE_THREAD_TOKENS
        with threadpool_limits(1, user_api="blas") if small else nullcontext():
            vectors = text.encode([list(r) for r in distinct])
        where = {r: i for i, r in enumerate(distinct)}
        return vectors[[where[tuple(r)] for r in rows]]

    return step


def _torch_step(encoder: AudioCLIPEncoder, modality: str, tower: Tower):
    """One batch of `modality` -> unnormalised rows, with the tower's torch module."""
    import torch

    from xsearch.models import preprocess, towers
    from xsearch.models.precision import precision_context, prepare_precision

    device, cfg, precision = torch.device(encoder.device), encoder.config, encoder.precision

    def autocast():
        if encoder.fp16 and precision == "fp32":  # CUDA's default
            return torch.autocast(device.type, dtype=torch.float16)
        return precision_context(precision, device)  # fp32, int8: none; bf16: bf16 autocast

    if modality == "text":
        model = towers.text_model(cfg, tower, device)
        prepare_precision(model.transformer, precision, device)

        def forward(batch: list) -> torch.Tensor:
            tokens = preprocess.tokenize(batch, cfg.text.context_length).to(device)
            return model.encode_text(tokens)

    elif modality == "image":
        visual = prepare_precision(towers.image_tower(cfg, tower, device), precision, device)
        size = cfg.vision.image_size

        def forward(batch: list) -> torch.Tensor:
            x = preprocess.image_batch(batch, size).to(device)
            return visual(x.contiguous(memory_format=torch.channels_last))

    else:
        audio = prepare_precision(towers.audio_tower(cfg, tower, device), precision, device)
        chunk = CPU_AUDIO_CHUNK if device.type == "cpu" else None

        def forward(batch: list) -> torch.Tensor:
            x = preprocess.audio_tensor(batch).to(device)
            return torch.cat([audio(part) for part in x.split(chunk or len(batch))])

    def step(batch: list) -> np.ndarray:
        with torch.inference_mode(), autocast():
            return forward(batch).float().cpu().numpy()

    return step
