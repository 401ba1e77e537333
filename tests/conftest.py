"""Shared fixtures: a tiny AudioCLIP checkpoint written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's cache or picks up their XSEARCH_WEIGHTS."""
    monkeypatch.setenv("XSEARCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("XSEARCH_WEIGHTS", raising=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An official-format state dict of the `audioclip-tiny` architecture, seeded."""
    import torch

    from xsearch.models.checkpoint import build_model
    from xsearch.models.config import get_config

    torch.manual_seed(0)
    model = build_model(get_config("audioclip-tiny"))
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_encoder(tiny_checkpoint):
    from xsearch.models.checkpoint import load_checkpoint
    from xsearch.models.encoder import AudioCLIPEncoder

    return AudioCLIPEncoder(load_checkpoint(tiny_checkpoint), "cpu", batch_size=4)
