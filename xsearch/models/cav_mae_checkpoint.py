"""Reading the official CAV-MAE checkpoints, safely and strictly.

The published files are bare state dicts saved from `nn.DataParallel` (every key prefixed
`module.`), which the official code loads with `strict=False`. They are read with
`weights_only=True` and the allow-list of `clap_checkpoint.read_checkpoint`, so nothing in the
pickle runs. The encoder's keys must all be there with the architecture's shapes; the MAE
decoder's keys and the joint-stream LayerNorm (`norm`), which retrieval does not use, are
accepted and dropped; any other key is refused, so that a file of another model is named as
such rather than half loaded.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from xsearch.errors import CheckpointError
from xsearch.models.cav_mae import CavMaeConfig, build_cav_mae
from xsearch.models.checkpoint_files import describe_mismatch
from xsearch.models.clap_checkpoint import read_checkpoint

PREFIX = "module."
# The pretraining model's keys that retrieval does not use.
_UNUSED = re.compile(r"^(decoder_[\w.]+|mask_token|norm\.(weight|bias))$")


@functools.lru_cache(maxsize=4)
def expected_state(config: CavMaeConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Every key of the encoder with its shape and dtype (built on meta)."""
    model = build_cav_mae(config, device="meta")
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def load_cav_mae_state(path: str | Path, config: CavMaeConfig) -> dict[str, torch.Tensor]:
    """The checked encoder state dict of the checkpoint at `path`, keys as the model names
    them (prefix and unused keys dropped), tensors memory-mapped where the dtype fits."""
    path = Path(path)
    obj = read_checkpoint(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]  # a re-saved copy in the common container
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: no state dict in it (a {config.name} file is one)")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: its state dict holds {key!r}, which is not a tensor")
        key = key.removeprefix(PREFIX)
        if not _UNUSED.match(key):
            state[key] = value
    want = expected_state(config)
    problem = describe_mismatch(
        {k: v.shape for k, v in state.items()}, {k: s for k, (s, _) in want.items()}
    )
    if problem:
        raise CheckpointError(f"{path}: not a {config.name} checkpoint: {problem}")
    return {k: v if v.dtype == want[k][1] else v.to(want[k][1]) for k, v in state.items()}
