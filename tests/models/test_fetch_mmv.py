"""`fetch_weights` for MMV: the published .pkl is downloaded, converted once into the
checkpoint commands load (nothing in it runs), and removed; a file that does not convert
leaves nothing behind."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.file_server import serve_files
from tests.helpers.mmv_recipe import make_tree, write_official_pkl
from xsearch.errors import DownloadError
from xsearch.models import fetch
from xsearch.models.mmv import mmv_config
from xsearch.models.mmv_checkpoint import load_mmv_state
from xsearch.models.registry import Release, model_card
from xsearch.models.weights import resolve_weights

MODEL = "mmv-tiny"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XSEARCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("mmv-fetch")
    return write_official_pkl(make_tree(mmv_config(MODEL)), folder / "p.pkl").read_bytes()


def _publish(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    card = replace(model_card(MODEL), releases=(Release("seeded", "mmv_tiny.pkl", f"{base}/p"),))
    monkeypatch.setattr(fetch, "model_card", lambda name: card)
    monkeypatch.setattr("xsearch.models.weights.model_card", lambda name: card)


def test_fetch_converts_the_pickle_once_and_commands_find_it(official, monkeypatch, tmp_path):
    with serve_files({"/p": official}) as (base, asked):
        _publish(monkeypatch, base)
        result = fetch.fetch_weights(model=MODEL)
        folder = tmp_path / "cache" / "weights" / MODEL
        assert result.path == folder / "mmv_tiny.pt" and result.downloaded
        assert sorted(p.name for p in folder.iterdir()) == ["mmv_tiny.pt", "mmv_tiny.pt.sha256"]
        load_mmv_state(result.path, MODEL)
        assert resolve_weights(None, MODEL).path == result.path
        asked.clear()
        again = fetch.fetch_weights(model=MODEL)
        assert not again.downloaded and asked == []


def test_a_file_that_does_not_convert_leaves_nothing(monkeypatch, tmp_path):
    with serve_files({"/p": b"\x80\x04K\x01."}) as (base, _):  # a pickle of the number 1
        _publish(monkeypatch, base)
        with pytest.raises(DownloadError, match="failed verification") as caught:
            fetch.fetch_weights(model=MODEL, dest_dir=tmp_path / "w")
    assert "\n" not in str(caught.value)
    assert not list((tmp_path / "w").iterdir())
