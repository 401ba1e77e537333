"""Shared fixtures: the models tests embed with (the tiny AudioCLIP, random or from a checkpoint
the tests write themselves, and torch-free fakes of any shape) and indexes built with them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import xsearch

# As the `xsearch` command and server do, before numpy, torch or faiss load: otherwise idle
# OpenMP and OpenBLAS threads spin for the cores, and on a busy machine the suite's many small
# FAISS searches take up to twice as long.
xsearch.tune_threads()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's cache or picks up their XSEARCH_WEIGHTS."""
    monkeypatch.setenv("XSEARCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("XSEARCH_WEIGHTS", raising=False)


@pytest.fixture
def runtime_dir(monkeypatch):
    """A private XDG_RUNTIME_DIR (where resident processes put their sockets), short enough
    for a socket's path."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="xsrt"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# --- the tiny AudioCLIP ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_audioclip():
    """The tiny AudioCLIP with random weights (seed 0) on the CPU, batches of 4: what
    `load_encoder("random", config="audioclip-tiny")` gives, loaded once per run. Shared by
    every test: never change its attributes (wrap it, or load your own)."""
    from xsearch.models import load_encoder

    return load_encoder("random", config="audioclip-tiny", device="cpu", batch_size=4)


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
    """The tiny AudioCLIP loaded from `tiny_checkpoint` (its identity is the file's digest,
    not "random")."""
    from xsearch.models.checkpoint import load_checkpoint
    from xsearch.models.encoder import AudioCLIPEncoder

    return AudioCLIPEncoder(load_checkpoint(tiny_checkpoint), "cpu", batch_size=4)


# --- torch-free fakes --------------------------------------------------------------------------


@pytest.fixture
def fake_encoder() -> Callable[..., Any]:
    """A factory of torch-free FakeEncoders: `fake_encoder("512-audio-text")` for one of
    tests.helpers.fakes.FAKE_SPECS, `fake_encoder(dim=..., modalities=..., sample_rate=...,
    image_size=...)` for any other shape (see xsearch.models.fake.fake_spec)."""
    from tests.helpers.fakes import FAKE_SPECS
    from xsearch.models.fake import FakeEncoder, fake_spec
    from xsearch.models.spec import EncoderSpec

    def make(
        shape: str | EncoderSpec | None = None, *, batch_size: int = 4, **spec: Any
    ) -> FakeEncoder:
        if shape is not None and spec:
            raise TypeError("give a shape or the fields of a spec, not both")
        if isinstance(shape, str):
            shape = FAKE_SPECS[shape]
        return FakeEncoder(shape or fake_spec(**spec), batch_size=batch_size)

    return make


@pytest.fixture(scope="session")
def fake_media_index(tmp_path_factory) -> Callable[[str], Any]:
    """`fake_media_index(shape)`: the media tree (tests.helpers.media_tree) ingested through
    the public API by a fake of FAKE_SPECS[shape], built once per run and shape, and opened
    afresh (with its own FakeEncoder) on each call. Read it only: to change it, copy it first
    (tests.helpers.fakes.copy_index)."""
    from tests.helpers.fakes import FAKE_SPECS, build_media_index, open_fake

    built: dict[str, Path] = {}

    def get(shape: str):
        spec = FAKE_SPECS[shape]
        if shape not in built:
            built[shape] = build_media_index(tmp_path_factory.mktemp(shape), spec).dir
        return open_fake(built[shape], spec)

    return get
