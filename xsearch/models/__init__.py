"""The embedding models: configs, the AudioCLIP towers, checkpoints, weights and encoders.

`load_encoder` is the one entry point most code needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xsearch.models.encoder import Encoder


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; anything else is checked."""
    import torch

    from xsearch.errors import UsageError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} asked for, but no CUDA GPU is available")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"unsupported device {device!r}; use auto, cpu, cuda or cuda:N")
    return str(dev)


def load_encoder(
    weights: str | None = None,
    config: str | None = None,
    device: str = "auto",
    batch_size: int = 16,
    seed: int = 0,
) -> Encoder:
    """The AudioCLIP encoder for `weights` (a path, 'random', or None to resolve as the CLI
    does: XSEARCH_WEIGHTS, then the cache). Random weights use `config` (default audioclip)
    and `seed`."""
    import torch

    from xsearch.models.checkpoint import build_model, load_checkpoint
    from xsearch.models.config import DEFAULT_CONFIG, get_config
    from xsearch.models.encoder import AudioCLIPEncoder
    from xsearch.models.weights import resolve_weights

    choice = resolve_weights(weights)
    dev = resolve_device(device)
    if choice.is_random:
        torch.manual_seed(seed)
        model = build_model(get_config(config or DEFAULT_CONFIG))
    else:
        model = load_checkpoint(choice.path, config)
    encoder = AudioCLIPEncoder(model, dev, batch_size=batch_size)
    encoder.weights = choice
    return encoder
