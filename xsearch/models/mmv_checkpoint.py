"""MMV's weights: the official `.pkl` parameter files converted once into a PyTorch checkpoint.

The official release is a pickle of Haiku parameter trees (read by `pickled_params.py`,
which builds arrays and dicts only). `convert_mmv` maps it to this port's state dict
(`mmv_params.state_dict_from_haiku`, every key and shape checked) and writes
`{"format", "model", "state_dict", "vocabulary"}` with `torch.save`, atomically; commands then
read that file with `weights_only=True`, memory-mapped, as every other checkpoint. The word
list of the text tower was not released: a vocabulary file given to the converter (one word
per line, in the embedding table's order) is stored in the checkpoint; without one the model
embeds no text (random weights use hashed words).
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch

from xsearch.errors import CheckpointError
from xsearch.models.checkpoint_files import describe_mismatch
from xsearch.models.clap_checkpoint import read_checkpoint

FORMAT = "xsearch-mmv-1"  # (its name in the cache: `Release.installed`)


def is_official_pickle(path: Path) -> bool:
    """Whether `path` starts as a pickle rather than a zip (torch.save) archive."""
    with open(path, "rb") as file:
        return file.read(1) == b"\x80"


@functools.lru_cache(maxsize=4)
def expected_state(name: str) -> dict[str, tuple[int, ...]]:
    """Every key of the port of model `name`, with its shape (built on meta)."""
    from xsearch.models.mmv import build_mmv, mmv_config

    with torch.device("meta"):
        model = build_mmv(mmv_config(name), device="meta")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def convert_mmv(
    source: str | Path, model: str, dest: str | Path, vocabulary: str | Path | None = None
) -> Path:
    """Convert MMV's official parameter file `source` for `model` (e.g. mmv-s3d) into the
    checkpoint `dest` (written aside, then renamed over it); `vocabulary`: its word list, one
    word per line. CheckpointError, one line, for a file that is not that model's."""
    from xsearch.models.mmv import mmv_config
    from xsearch.models.mmv_params import state_dict_from_haiku
    from xsearch.models.pickled_params import read_pickled_params

    source, dest = Path(source).expanduser(), Path(dest).expanduser()
    config = mmv_config(model)
    tree = read_pickled_params(source)
    if not isinstance(tree, Mapping) or not {"params", "state"} <= set(tree):
        held = ", ".join(map(repr, list(tree)[:4])) if isinstance(tree, Mapping) else "no mapping"
        raise CheckpointError(
            f"{source}: not an MMV parameter file (it holds {held}; one holds 'params' and 'state')"
        )
    state = {k: v.contiguous() for k, v in state_dict_from_haiku(tree, config).items()}
    words = read_words(vocabulary, config.vocab_size) if vocabulary is not None else None
    payload = {"format": FORMAT, "model": model, "state_dict": state, "vocabulary": words}
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(part, dest)
    except BaseException:
        Path(part).unlink(missing_ok=True)
        raise
    return dest


def read_words(path: str | Path, vocab_size: int) -> list[str]:
    """The words of a vocabulary file (UTF-8, one per line, in the embedding table's order);
    at most `vocab_size` of them."""
    from xsearch.models.mmv_tokenizer import read_vocabulary

    words = read_vocabulary(Path(path).expanduser())
    if len(words) > vocab_size:
        raise CheckpointError(
            f"{path}: {len(words)} words, more than the model's {vocab_size} embeddings"
        )
    return words


def load_mmv_state(path: str | Path, model: str) -> tuple[dict[str, torch.Tensor], list | None]:
    """(the checked state dict, the vocabulary or None) of the converted checkpoint at
    `path` for `model`; the official `.pkl` is named as needing `xsearch model convert`."""
    path = Path(path)
    if path.is_file() and is_official_pickle(path):
        raise CheckpointError(
            f"{path}: MMV's official parameter file; convert it once with "
            f"`xsearch model convert {model} {path}`"
        )
    obj = read_checkpoint(path)
    if not isinstance(obj, Mapping) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an MMV checkpoint written by `xsearch model convert`")
    if obj.get("model") != model:
        raise CheckpointError(f"{path}: converted for {obj.get('model')}, not {model}")
    state = obj.get("state_dict")
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(f"{path}: its state dict is not a mapping of tensors")
    problem = describe_mismatch({k: v.shape for k, v in state.items()}, expected_state(model))
    if problem:
        raise CheckpointError(f"{path}: not a {model} checkpoint: {problem}")
    words = obj.get("vocabulary")
    if words is not None and not (
        isinstance(words, list) and all(isinstance(w, str) for w in words)
    ):
        raise CheckpointError(f"{path}: its vocabulary is not a list of words")
    return {k: v.float() for k, v in state.items()}, words
