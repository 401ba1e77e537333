"""Shared test helpers (fake models): the model shapes the store, search and server suites run
with, and an index of the media tree built through the public API with a torch-free fake."""

from __future__ import annotations

import shutil
from pathlib import Path

import xsearch
from tests.helpers.media_tree import make_media
from xsearch.api import Index, IngestOptions
from xsearch.models.fake import FakeEncoder, fake_spec
from xsearch.models.spec import MODALITIES, EncoderSpec

# The shapes every model-agnostic suite runs with: AudioCLIP's own, a CLAP-like audio+text
# model and an audio+image one, each with its own width, sample rate and image size.
FAKE_SPECS: dict[str, EncoderSpec] = {
    "audioclip-like": fake_spec(1024, ("image", "audio", "text"), 44_100, 224),
    "512-audio-text": fake_spec(512, ("audio", "text"), 48_000),
    "768-audio-image": fake_spec(768, ("audio", "image"), 16_000, 48),
}

# What a search of an index of each shape may return, in the order shells list them.
TARGETS: dict[str, tuple[str, ...]] = {
    "audioclip-like": ("audio", "image", "text", "video", "all"),
    "512-audio-text": ("audio", "text", "video", "all"),
    "768-audio-image": ("audio", "image", "video", "all"),
}

# Items the media tree gives each modality a model embeds: six sound windows (the bark, the
# drops, the video's track, three of the 25 s storm), two pictures (the sky, the video's
# frame) and one text (the video's sidecar).
MEDIA_ITEMS = {"audio": 6, "image": 2, "text": 1}


def lacking(spec: EncoderSpec) -> list[str]:
    """The modalities `spec`'s model does not embed."""
    return [m for m in MODALITIES if m not in spec.modalities]


def build_media_index(base: Path, spec: EncoderSpec, name: str = "media") -> Index:
    """The media tree (tests.helpers.media_tree) under `base/media`, ingested into index
    `name` under `base/home` by a FakeEncoder of `spec`, files labelled with their folder."""
    media = make_media(base / "media")
    index = xsearch.open(name, root=base / "home", create=True)
    index.use_encoder(FakeEncoder(spec, batch_size=4))
    report = index.ingest([media], IngestOptions(workers=0, labels_from_folder=True))
    assert report.generation == 1
    return index


def open_fake(directory: Path, spec: EncoderSpec) -> Index:
    """The index at `directory`, opened afresh, embedding queries with a FakeEncoder of
    `spec` (a new one, so its `calls` count only this index's model calls)."""
    index = xsearch.open(directory.name, root=directory.parent)
    index.use_encoder(FakeEncoder(spec, batch_size=4))
    return index


def copy_index(index: Index, spec: EncoderSpec, to: Path) -> Index:
    """A copy of `index`'s folder at `to`/name, opened: for tests that change an index that
    others share."""
    target = to / index.name
    shutil.copytree(index.dir, target)
    return open_fake(target, spec)


def item_of(index: Index, name: str, modality: str, start: float | None = None) -> int:
    """The id of the `modality` item of the file called `name` (the one starting at `start`,
    when given)."""
    asset = next(a for a in index.store.assets.to_pylist() if Path(a["path"]).name == name)
    return next(
        i["item_id"]
        for i in index.store.items.to_pylist()
        if i["asset_id"] == asset["asset_id"]
        and i["modality"] == modality
        and (start is None or i["start"] == start)
    )


def media_of(index: Index) -> Path:
    """The media folder an index of build_media_index was made from."""
    return index.dir.parent.parent / "media"
