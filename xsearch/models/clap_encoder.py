"""The CLAP encoders (LAION-CLAP, Microsoft CLAP): waveforms and texts -> L2-normalised rows.

Each tower is built the first time its modality is embedded, from the checkpoint (only that
tower's tensors, memory-mapped) or from seeded random weights, so an audio ingest never
reads the text tower and a text query never builds HTS-AT. Nothing heavy is imported before.

Audio longer than the model's clip is cut into consecutive clip-length windows (the last,
shorter one filled by the model's rule, see `clap_audio`), each window is embedded, and the
unit vectors are averaged and normalised again. The official wrappers embed one random crop
instead; this is its deterministic stand-in, and it sees the whole file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from xsearch.errors import ParameterError, WeightsNotFound
from xsearch.models.batching import batches, embed_in_windows
from xsearch.models.bpe import FILES, has_vocabulary
from xsearch.models.clap_audio import prepare_clip
from xsearch.models.clap_config import clap_config
from xsearch.models.encoder import normalize_rows
from xsearch.models.lazy_towers import LazyTowers
from xsearch.models.registry import model_card, spec_for
from xsearch.models.spec import Encoder
from xsearch.models.weights import WeightsChoice, cache_dir

PRECISIONS = ("fp32", "bf16", "fp16")
SMALL_TEXT_TOKENS = (
    64  # a text batch of at most this many tokens (padding included) runs on one CPU thread
)


def check_clap_precision(precision: str, device: str) -> str:
    """`precision` when a CLAP model can run it on `device`, else a one-line ParameterError."""
    if precision == "int8":
        raise ParameterError("precision", "int8 is not available for CLAP models; use fp32 or bf16")
    if precision not in PRECISIONS:
        raise ParameterError(
            "precision", f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
        )
    if precision == "fp16" and not device.startswith("cuda"):
        raise ParameterError("precision", "fp16 runs on CUDA only; use fp32 or bf16 on the CPU")
    return precision


class ClapEncoder(LazyTowers, Encoder):
    """A LAION-CLAP or Microsoft CLAP model (audio and text) as an Encoder."""

    def __init__(
        self,
        config_name: str,
        checkpoint: Path | None,
        device: Any = "cpu",
        batch_size: int = 16,
        seed: int = 0,
        precision: str = "fp32",
        tokenizer_dir: Path | None = None,
        fp16: bool | None = None,
    ) -> None:
        """`checkpoint` None means seeded random weights (`seed`). `tokenizer_dir` holds
        vocab.json and merges.txt; by default the checkpoint's folder, or a byte-level
        vocabulary in the cache for random weights. Precision: fp32 runs float32 on the CPU
        and, like the AudioCLIP encoder, under fp16 autocast on CUDA unless `fp16=False`;
        bf16 is a bfloat16 autocast on either; fp16 asks for CUDA's fp16 autocast."""
        self.config = clap_config(config_name)
        self.spec = spec_for(config_name)
        self.weights = WeightsChoice.given(checkpoint)
        self.checkpoint = self.weights.path
        self.device = str(device)
        self.precision = check_clap_precision(precision, self.device)
        on_gpu = self.device.startswith("cuda")
        self.fp16 = precision == "fp16" or (
            precision == "fp32" and (on_gpu if fp16 is None else fp16)
        )
        self.batch_size = batch_size
        self.seed = seed
        self.tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir is not None else None
        self._init_towers()

    # --- towers ----------------------------------------------------------------------------

    def _model(self, modality: str):
        """A model whose `modality` tower holds its weights, on the device; the other tower
        holds none (meta tensors)."""
        import torch

        from xsearch.models.clap import build_clap, tower_modules, tower_prefixes

        family = self.config.family
        if self.checkpoint is None:
            with torch.random.fork_rng(devices=[]):  # the caller's RNG is left as it was
                torch.manual_seed(self.seed)
                model = build_clap(self.config)
        else:
            from xsearch.models.clap_checkpoint import load_clap_state

            state = load_clap_state(self.checkpoint, self.config)
            prefixes = tower_prefixes(family, modality)
            model = build_clap(self.config, device="meta")
            tower_state = {k: v for k, v in state.items() if k.startswith(prefixes)}
            model.load_state_dict(tower_state, strict=False, assign=True)
        keep = {id(m) for m in tower_modules(model, modality)}
        for child in model.children():
            child.to(self.device if id(child) in keep else "meta")
        return model.eval()

    def _autocast(self, device) -> AbstractContextManager:
        import torch

        from xsearch.models.precision import precision_context

        if self.precision == "bf16":
            return precision_context("bf16", device)
        if self.fp16 and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()

    def _load(self, modality: str) -> Callable[[list], np.ndarray]:
        import torch

        device = torch.device(self.device)
        tokenizer = self._tokenizer() if modality == "text" else None  # fail before building
        model = self._model(modality)

        def tokens(batch: list) -> tuple[np.ndarray, np.ndarray]:
            ids, mask = tokenizer(batch)
            # Padding past the batch's longest text changes no embedding (padded keys are
            # masked, and GPT-2 is causal), so it is not computed: four 8-token labels
            # took 0.24 s on one CPU thread instead of 1.1 s at the full 77 tokens.
            length = max(1, int(mask.sum(axis=1).max()))
            return ids[:, :length], mask[:, :length]

        def forward(batch: list) -> torch.Tensor:
            if tokenizer is None:
                return model.audio_embedding(torch.from_numpy(np.stack(batch)).to(device))
            ids, mask = tokens(batch)
            # A few tokens run on one CPU thread: on a busy machine a second thread made
            # each small layer several times slower (as for AudioCLIP's text tower).
            small = device.type == "cpu" and ids.size <= SMALL_TEXT_TOKENS
            with _torch_threads(1, small):
                return model.text_embedding(
                    torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
                )

        def step(batch: list) -> np.ndarray:
            with torch.inference_mode(), self._autocast(device):
                return forward(batch).float().cpu().numpy()

        return step

    # --- text ------------------------------------------------------------------------------

    def tokenizer_folder(self) -> Path:
        """Where vocab.json and merges.txt are read from; WeightsNotFound, in one line, when
        a checkpoint has none beside it and no folder was given."""
        from xsearch.models.bpe import byte_level_vocab

        kind, name = self.config.text.tower, self.config.name
        files = " and ".join(FILES)
        if self.tokenizer_dir is not None:
            if not has_vocabulary(self.tokenizer_dir):
                raise WeightsNotFound(
                    f"{self.tokenizer_dir}: no {files} there (the {kind} tokenizer of {name})"
                )
            return self.tokenizer_dir
        if self.checkpoint is not None:
            if has_vocabulary(self.checkpoint.parent):
                return self.checkpoint.parent
            urls = ", ".join(f.url for f in model_card(self.config.name).tokenizer)
            where = f" (official copies: {urls})" if urls else ""
            raise WeightsNotFound(
                f"{name}: its text tower needs the {kind} tokenizer files {files}: put them "
                f"beside {self.checkpoint} or give their folder{where}"
            )
        folder = cache_dir() / "tokenizers" / f"{kind}-bytes"
        return folder if has_vocabulary(folder) else byte_level_vocab(folder, kind)

    def _tokenizer(self):
        from xsearch.models.bpe import ClapTokenizer

        text = self.config.text
        return ClapTokenizer(
            self.tokenizer_folder(), text.tower, text.context_length, text.max_positions
        )

    # --- embedding -------------------------------------------------------------------------

    def embed_text(self, texts: Sequence[str | Sequence[str]]) -> np.ndarray:
        joined = [t if isinstance(t, str) else ", ".join(t) for t in texts]
        out = np.empty((len(joined), self.dim), dtype=np.float32)
        if not joined:
            return out
        step = self._tower("text")
        start = 0
        for batch in batches(joined, self.batch_size):
            out[start : start + len(batch)] = normalize_rows(step(batch))
            start += len(batch)
        return out

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        self.spec.require("image")
        raise AssertionError("unreachable: CLAP models embed no images")  # pragma: no cover

    def embed_audio(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Mono waveforms at the model's rate, int16 scale, any lengths -> [n, dim]: the
        normalised mean of the unit vectors of each wave's clip-length windows."""
        if not len(waves):
            return np.zeros((0, self.dim), dtype=np.float32)
        step = self._tower("audio")
        config = self.config
        return embed_in_windows(
            waves,
            config.audio.clip_samples,
            self.batch_size,
            self.dim,
            lambda windows: step([prepare_clip(w, config) for w in windows]),
        )


@contextmanager
def _torch_threads(count: int, when: bool) -> Iterator[None]:
    """torch runs on `count` threads inside the block when `when`, then as before."""
    import torch

    before = torch.get_num_threads()
    if when:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if when:
            torch.set_num_threads(before)
