"""Reading, checking and building from AudioCLIP checkpoints.

A checkpoint is untrusted input: it is read with `weights_only=True` (no pickle code runs),
and every key and shape is checked against the architecture before anything is loaded, so
a wrong file fails with one message that names what is missing, unexpected or mis-shaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from xsearch.errors import CheckpointError
from xsearch.models.audioclip import AudioCLIP
from xsearch.models.checkpoint_files import describe_mismatch, require_checkpoint_file
from xsearch.models.config import DEFAULT_CONFIG, ModelConfig, available_configs, get_config


def _load(path: Path, map_location: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, on `map_location`; CheckpointError when the file is
    not one, saying what it is instead."""
    require_checkpoint_file(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a bad file; all mean the same here
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            reason = "it holds Python objects besides tensors, refused for safety"
        raise CheckpointError(f"{path}: not a loadable PyTorch checkpoint ({reason})") from None
    # Accept the common wrappers around a plain state dict.
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and set(obj) == {wrapper} and isinstance(obj[wrapper], Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise CheckpointError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    return dict(obj)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file.

    Not memory-mapped: a checkpoint rewritten in place while mapped would crash the process.
    """
    return _load(Path(path), "cpu")


def read_shapes(path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors on the meta device: names, shapes and dtypes without reading
    the data, to identify its config or count its parameters cheaply."""
    return _load(Path(path), "meta")


def checkpoint_config(path: str | Path, name: str | None = None) -> ModelConfig:
    """The config the checkpoint at `path` fits (see `config_for`), without loading its data."""
    try:
        return config_for(read_shapes(path), name)
    except CheckpointError as err:
        if str(path) in str(err):
            raise
        raise CheckpointError(f"{path}: {err}") from None


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the architecture with its shape (built on the meta device)."""
    with torch.device("meta"):
        model = AudioCLIP(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _mismatch(state: Mapping[str, torch.Tensor], cfg: ModelConfig) -> str:
    """'' when `state` fits `cfg` exactly, else a one-line description of the differences."""
    return describe_mismatch({k: v.shape for k, v in state.items()}, expected_shapes(cfg))


def config_for(state: Mapping[str, torch.Tensor], name: str | None = None) -> ModelConfig:
    """The config `state` fits: `name` if given, else the registered config it matches."""
    names = (
        [name]
        if name
        else [DEFAULT_CONFIG, *(n for n in available_configs() if n != DEFAULT_CONFIG)]
    )
    first_error = ""
    for candidate in names:
        cfg = get_config(candidate)
        problem = _mismatch(state, cfg)
        if not problem:
            return cfg
        first_error = first_error or f"does not match the {candidate!r} architecture ({problem})"
    hint = "" if name else "; for another model give its name (see `xsearch model list`)"
    raise CheckpointError(f"checkpoint {first_error}{hint}")


def build_model(cfg: ModelConfig, state: Mapping[str, torch.Tensor] | None = None) -> AudioCLIP:
    """An AudioCLIP in eval mode: with `state`, its tensors are used as they are (no copy);
    without, freshly initialised (seed torch first for reproducible random weights)."""
    if state is None:
        return AudioCLIP(cfg).eval()
    problem = _mismatch(state, cfg)
    if problem:
        raise CheckpointError(
            f"checkpoint does not match the {cfg.name!r} architecture ({problem})"
        )
    with torch.device("meta"):
        model = AudioCLIP(cfg)
    floats = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(floats, strict=True, assign=True)
    # Buffers that are not saved in checkpoints are still on the meta device.
    model.attn_mask = model.causal_mask(cfg.text.context_length)
    return model.eval()


def load_checkpoint(path: str | Path, config: str | None = None) -> AudioCLIP:
    """Read, check and build: the one call behind `--weights PATH`."""
    state = read_state_dict(path)
    try:
        cfg = config_for(state, config)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return build_model(cfg, state)
