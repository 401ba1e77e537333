"""The public API covers every command: create by ingesting, status, search, verify, repair,
rebuild; typed results; errors in neutral words; any model width and modality set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import xsearch
from tests.helpers.fakes import FAKE_SPECS, build_media_index, item_of, media_of
from xsearch.api import IndexStatus
from xsearch.errors import ParameterError, UsageError


@pytest.mark.parametrize("name", list(FAKE_SPECS))
def test_ingest_status_search_verify_rebuild_for_any_model(tmp_path, name):
    spec = FAKE_SPECS[name]
    index = build_media_index(tmp_path, spec)
    status = index.status()
    assert isinstance(status, IndexStatus)
    assert set(status.items) == set(spec.modalities)
    assert status.generation == 1 and status.recipe["window_seconds"] == 10.0
    assert status.targets == list(index.targets)
    assert ("text" in index.targets) == ("text" in spec.modalities)
    assert all(status.items[m] > 0 for m in spec.modalities), status.items
    hits = index.search(like=index.store.item_ids("audio")[:1].tolist(), target="audio", k=3)
    assert hits[0].modality == "audio" and hits[0].cosine == pytest.approx(1.0, abs=1e-5)
    assert index.verify().healthy
    reports = index.rebuild("HNSW16")
    assert {r.modality for r in reports} == set(spec.modalities)
    assert index.status().generation == 2 and index.verify().healthy


def test_errors_name_parameters_in_neutral_words(fake_media_index):
    index = fake_media_index("audioclip-like")
    calls = dict(index.encoder.calls)
    with pytest.raises(ParameterError) as k_error:
        index.search(text="rain", k=0)
    assert k_error.value.param == "k" and "-k" not in str(k_error.value)
    with pytest.raises(ParameterError) as where_error:
        index.search(text="rain", where="no_such_column = 1")
    assert where_error.value.param == "where" and "--where" not in str(where_error.value)
    with pytest.raises(ParameterError) as per_file_error:
        index.search(text="rain", per_file=0)
    assert per_file_error.value.param == "per_file"
    assert index.encoder.calls == calls, "errors are found before any model call"


def test_per_file_reaches_the_search(fake_media_index):
    index = fake_media_index("audioclip-like")
    first = index.search(like=index.store.item_ids("audio")[:1].tolist(), target="audio", k=50)
    once = index.search(
        like=index.store.item_ids("audio")[:1].tolist(), target="audio", k=50, per_file=1
    )
    assert len({h.asset_id for h in once}) == len(once) < len(first)
    assert [h.asset_id for h in once] == list(dict.fromkeys(h.asset_id for h in first))


def test_status_of_an_index_with_no_generation(tmp_path):
    index = xsearch.open("new", root=tmp_path, create=True)
    status = index.status()
    assert (status.generation, status.assets, status.items, status.model) == (0, 0, {}, None)
    assert not index.exists


def test_an_unknown_index_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="no index at"):
        xsearch.open("nothing-here", root=tmp_path)


def test_ingesting_an_empty_folder_creates_nothing(tmp_path, fake_encoder):
    (tmp_path / "empty").mkdir()
    index = xsearch.open("idx", root=tmp_path / "home", create=True)
    index.use_encoder(fake_encoder())
    with pytest.raises(UsageError, match="no media files found"):
        index.ingest([tmp_path / "empty"])
    assert not index.exists


@pytest.mark.parametrize("name", list(FAKE_SPECS))
def test_embed_queries_decode_at_the_models_rate(fake_media_index, name):
    """The fake's vectors are keyed by the samples: a query sound gets the vector stored for
    its file only when decoded at the rate ingest used, the model's."""
    index = fake_media_index(name)
    bark = media_of(index) / "dogs" / "bark.wav"
    vectors = index.embed_queries(audio=[bark])
    assert vectors.shape == (1, FAKE_SPECS[name].dim)
    assert np.isclose(np.linalg.norm(vectors[0]), 1.0)
    stored = index.store.vectors([item_of(index, "bark.wav", "audio")])
    assert np.allclose(vectors[0], stored[0], atol=1e-6)


def test_every_public_name_resolves_and_none_is_shadowed_by_a_module():
    """A submodule named like an exported function would replace it once imported."""
    import types

    import xsearch.api as api

    modules = {p.stem for p in Path(api.__file__).parent.glob("*.py")}
    assert not modules & set(api.__all__)
    for name in api.__all__:
        value = getattr(api, name)
        assert not isinstance(value, types.ModuleType), name
        assert value.__doc__ or not callable(value), f"{name} has no docstring"
