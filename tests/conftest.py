"""Shared fixtures: a tiny AudioCLIP checkpoint written by the tests themselves."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run the installed `xsearch` console script in a subprocess; returns CompletedProcess."""
    import subprocess

    exe = Path(sys.executable).with_name("xsearch")
    full_env = {**os.environ, **(env or {}), "COLUMNS": "200"}
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300
    )
