"""The embedding models: the registry, each family's towers, checkpoints, weights, encoders.

`load_encoder` is the one entry point most code needs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xsearch.models.encoder import Encoder


def _no_nvidia_driver() -> bool:
    """True when this machine certainly has no usable NVIDIA GPU (no driver loaded), which
    is known without importing torch."""
    return not any(os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl"))


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; anything else is checked. Without
    an NVIDIA driver 'auto' and 'cpu' are answered without importing torch."""
    from xsearch.errors import UsageError

    if device == "cpu" or (device == "auto" and _no_nvidia_driver()):
        return "cpu"
    import torch

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
    precision: str = "fp32",
) -> Encoder:
    """The encoder of model `config` (a name from `xsearch model list`; default: found
    from the checkpoint, else audioclip) with `weights` (a path, 'random', or None to
    resolve as the CLI does: XSEARCH_WEIGHTS, then the model's files in the cache). Random
    weights use `seed`. Cheap: each tower is loaded when first used, and nothing imports
    torch until a tower needs it."""
    from xsearch.models.registry import family_of
    from xsearch.models.weights import resolve_weights

    choice = resolve_weights(weights, config)
    dev = resolve_device(device)
    encoder: Encoder
    if config is not None and family_of(config) == "mmv":
        from xsearch.models.mmv_encoder import MmvEncoder

        encoder = MmvEncoder(
            config, choice.path, dev, batch_size=batch_size, seed=seed, precision=precision
        )
    elif config is not None and family_of(config) == "cav-mae":
        from xsearch.models.cav_mae_encoder import CavMaeEncoder

        encoder = CavMaeEncoder(
            config, choice.path, dev, batch_size=batch_size, seed=seed, precision=precision
        )
    elif config is not None and family_of(config) != "audioclip":
        from xsearch.models.clap_encoder import ClapEncoder

        encoder = ClapEncoder(
            config, choice.path, dev, batch_size=batch_size, seed=seed, precision=precision
        )
    else:
        from xsearch.models.encoder import AudioCLIPEncoder
        from xsearch.models.sources import tower_source

        source = tower_source(choice, config, seed)
        encoder = AudioCLIPEncoder(source, dev, batch_size=batch_size, precision=precision)
    encoder.weights = choice
    return encoder
