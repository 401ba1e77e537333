"""Reading the official LAION-CLAP and Microsoft CLAP checkpoints, safely and strictly.

A checkpoint is untrusted input. It is read with `weights_only=True`, so no code in its
pickle runs: only tensors, plain Python values and the few globals below are accepted, and a
file that needs any other global is refused with one line that names it. Every key and shape
is then checked against the architecture before a tensor is used.

Containers: LAION's files are `{"state_dict": {...}}` with every key prefixed `module.`
(saved from DistributedDataParallel); MS CLAP's are `{"model": {...}}`. A bare state dict is
accepted too. Keys the official loaders drop are dropped here as well: LAION's
`text_branch.embeddings.position_ids` (newer transformers no longer keep it) and the GPT-2
attention buffers old transformers versions saved (`h.N.attn.bias`, `h.N.attn.masked_bias`).
"""

from __future__ import annotations

import functools
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xsearch.errors import CheckpointError
from xsearch.models.checkpoint_files import describe_mismatch, require_checkpoint_file
from xsearch.models.clap import ClapModel, build_clap
from xsearch.models.clap_config import ClapConfig

# The non-tensor globals the official files need, and nothing else. LAION's training saved
# its checkpoints with the optimizer state, whose param_groups hold the learning rate its
# cosine schedule computed with NumPy (`0.5 * (1 + np.cos(...)) * base_lr`): a NumPy float64
# scalar. Pickled, that is `numpy.core.multiarray.scalar` (the module's name before NumPy 2,
# `numpy._core` after) applied to a `numpy.dtype("f8")` and its bytes; building that dtype
# sets the state of a `Float64DType`. `_codecs.encode` (the bytes) is allowed by torch already.
# None of these runs code: `scalar` only reinterprets bytes as a number of an allowed dtype.
_NUMPY_CORE = getattr(np, "_core", None) or np.core
_SCALAR = _NUMPY_CORE.multiarray.scalar
ALLOWED_GLOBALS: list[Any] = [
    (_SCALAR, "numpy.core.multiarray.scalar"),
    (_SCALAR, "numpy._core.multiarray.scalar"),
    np.dtype,
    type(np.dtype(np.float64)),  # numpy.dtypes.Float64DType
]

CONTAINERS = {"laion-clap": "state_dict", "msclap": "model"}
LAION_PREFIX = "module."
_DROPPED = re.compile(
    r"^(text_branch\.embeddings\.position_ids|caption_encoder\.base\.h\.\d+\.attn\.(masked_)?bias)$"
)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _refusal(path: Path, err: BaseException) -> CheckpointError:
    """The one-line error for a file the restricted unpickler refused."""
    found = re.search(r"GLOBAL (\S+)", str(err))
    if found:
        what = f"the Python global {found.group(1)}"
    elif "Can only build" in str(err):
        what = "an object of a type that is not allowed"
    else:
        what = f"something besides tensors and plain values ({_first_line(err)})"
    return CheckpointError(
        f"{path}: refused: the file needs {what}, which is not allowed in a weights file "
        "(nothing in it was run)"
    )


def read_checkpoint(path: str | Path) -> Any:
    """The object a checkpoint file holds, loaded with weights_only=True and the allow-list
    above; memory-mapped when it is a zip archive (what torch.save writes since 1.6)."""
    path = Path(path)
    require_checkpoint_file(path)
    mapped = zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(path, weights_only=True, map_location="cpu", mmap=mapped)
    except Exception as err:  # torch raises many types for a bad file
        text = str(err)
        if "Weights only load failed" in text or "WeightsUnpickler" in text:
            raise _refusal(path, err) from None
        reason = _first_line(err)
        raise CheckpointError(f"{path}: not a loadable PyTorch checkpoint ({reason})") from None


def _unwrap(obj: Any, config: ClapConfig, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside the official container, keys as the model names them."""
    container = CONTAINERS[config.family]
    bare = (
        isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())
    )
    if isinstance(obj, Mapping) and isinstance(obj.get(container), Mapping):
        obj = obj[container]
    elif not bare:
        held = _shown([repr(k) for k in obj]) if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{path}: no state dict in it (a {config.family} checkpoint keeps its weights "
            f"under {container!r}; this file holds {held or 'nothing'})"
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: its state dict holds {key!r}, which is not a tensor")
        if config.family == "laion-clap" and key.startswith(LAION_PREFIX):
            key = key[len(LAION_PREFIX) :]
        if not _DROPPED.match(key):
            state[key] = value
    return state


@functools.lru_cache(maxsize=8)
def expected_state(config: ClapConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Every state-dict key of the architecture with its shape and dtype (built on meta)."""
    model = build_clap(config, device="meta")
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def _shown(items: list[str]) -> str:
    more = f", ... ({len(items)} in all)" if len(items) > 3 else ""
    return ", ".join(items[:3]) + more


def check_state(state: Mapping[str, torch.Tensor], config: ClapConfig) -> str:
    """'' when `state` has exactly the keys and shapes of `config`'s model, else one line
    naming the first few that differ."""
    want = {k: shape for k, (shape, _) in expected_state(config).items()}
    return describe_mismatch({k: v.shape for k, v in state.items()}, want)


def load_clap_state(path: str | Path, config: ClapConfig) -> dict[str, torch.Tensor]:
    """The checked state dict of the checkpoint at `path` for `config`, keys as the model names
    them, tensors in the model's dtypes (memory-mapped, not copied, when they already are)."""
    path = Path(path)
    state = _unwrap(read_checkpoint(path), config, path)
    problem = check_state(state, config)
    if problem:
        raise CheckpointError(f"{path}: not a {config.name} checkpoint: {problem}")
    want = expected_state(config)
    return {k: v if v.dtype == want[k][1] else v.to(want[k][1]) for k, v in state.items()}


def load_clap_model(path: str | Path, config: ClapConfig) -> ClapModel:
    """The model of `config` with the weights of the checkpoint at `path`, on the CPU, in eval
    mode; its tensors are the file's (memory-mapped), not copies."""
    state = load_clap_state(path, config)
    model = build_clap(config, device="meta")
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
