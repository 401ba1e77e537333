"""Several indexes of the media tree, each built with its own fake model, under one home: what
the tests of searching several indexes at once run on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import xsearch.api.index as index_module
from tests.helpers.fakes import FAKE_SPECS, open_fake
from tests.helpers.media_tree import make_media
from xsearch.api import Index, IngestOptions
from xsearch.models.fake import FakeEncoder

# Index name -> the fake model that built it. "pictures" and "twin" are copies of one index
# (equal scores for every query); "quiet" holds the media tree without dogs/bark.wav, and
# "barks" only that file (so no picture, text or video, though its model embeds pictures).
MODELS = {
    "pictures": "audioclip-like",  # 1024-d image, audio, text at 44.1 kHz
    "twin": "audioclip-like",
    "sounds": "512-audio-text",  # 512-d audio, text at 48 kHz
    "quiet": "512-audio-text",
    "barks": "audioclip-like",
}


def make_home(home: Path, fake_media_index) -> Path:
    """The indexes of MODELS under `home`: copies of the shared media-tree indexes, and
    "quiet" and "barks" ingested here."""
    for name in ("pictures", "twin", "sounds"):
        shutil.copytree(fake_media_index(MODELS[name]).dir, home / name)
    media = make_media(home.parent / "media")
    bark = media / "dogs" / "bark.wav"
    options = IngestOptions(workers=0, labels_from_folder=True)
    xsearch_open(home, "barks", create=True).ingest([bark], options)
    bark.unlink()
    xsearch_open(home, "quiet", create=True).ingest([media], options)
    return home


def xsearch_open(home: Path, name: str, create: bool = False) -> Index:
    """Index `name` under `home`, embedding with a new fake of the model that built it."""
    if create:
        index = index_module.open_index(name, home, create=True)
        index.use_encoder(FakeEncoder(FAKE_SPECS[MODELS[name]], batch_size=4))
        return index
    return open_fake(home / name, FAKE_SPECS[MODELS[name]])


def fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every index opened by name (`xsearch.open`, `search_indexes`, the command line)
    embed with a fake of the model its manifest records: the fakes cannot be loaded by name."""
    real = index_module.open_index
    specs = {spec.config: spec for spec in FAKE_SPECS.values()}

    def opened(name, root=None, **options):
        index = real(name, root, **options)
        manifest = index.store.manifest
        assert manifest is not None
        index.use_encoder(FakeEncoder(specs[manifest.model["config"]], batch_size=4))
        return index

    monkeypatch.setattr(index_module, "open_index", opened)
