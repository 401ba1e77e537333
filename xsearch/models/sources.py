"""Where an encoder's towers come from: the cache, else the checkpoint or seeded random weights.

Nothing here imports torch unless a tower must be derived (the first use of a checkpoint) or
the config of an unknown checkpoint must be read from it.
"""

from __future__ import annotations

from pathlib import Path

from xsearch.models.config import DEFAULT_CONFIG, get_config
from xsearch.models.tower_cache import TowerSource, recorded_config
from xsearch.models.weights import WeightsChoice, weights_sha256


def tower_source(choice: WeightsChoice, config: str | None = None, seed: int = 0) -> TowerSource:
    """The towers of `choice`'s weights for `config` (for a checkpoint: the config it was
    found to fit before, else read from it)."""
    if choice.path is None:
        return random_source(config or DEFAULT_CONFIG, seed)
    return checkpoint_source(choice.path, config)


def random_source(config: str, seed: int = 0) -> TowerSource:
    """Random weights: what `torch.manual_seed(seed)` then building `config` gives."""
    get_config(config)  # an unknown name fails now, in one line

    def derive():
        import torch

        from xsearch.models.checkpoint import build_model
        from xsearch.models.towers import derive_towers

        torch.manual_seed(seed)
        return derive_towers(build_model(get_config(config)))

    return TowerSource(config, f"random-seed{seed}", derive)


def checkpoint_source(path: Path, config: str | None = None) -> TowerSource:
    """A checkpoint's towers. A file that is not a checkpoint fails now, without torch; one
    whose towers are not kept yet is checked against `config` (or its config found) now."""
    from xsearch.models.checkpoint_files import require_checkpoint_file

    require_checkpoint_file(path)
    sha256 = weights_sha256(path)
    known = recorded_config(sha256)  # the config its kept towers were derived for
    if config is not None:
        get_config(config)  # an unknown name fails in one line
    config = config or known
    if config is None or config != known:
        from xsearch.models.checkpoint import checkpoint_config

        config = checkpoint_config(path, config).name  # reads shapes only; fails if unfit
    chosen = config

    def derive():
        from xsearch.models.checkpoint import load_checkpoint
        from xsearch.models.towers import derive_towers

        return derive_towers(load_checkpoint(path, chosen))

    return TowerSource(config, sha256, derive)
