"""Facets (xsearch/search/facets.py): kind, duration, date, folder and labels as values, written
as a filter whose values cannot change its meaning; and what an index holds to filter by."""

from __future__ import annotations

import os

import numpy as np
import pytest

from xsearch.errors import ParameterError
from xsearch.search.facets import Facets, available


@pytest.fixture(scope="module")
def index(fake_media_index):
    return fake_media_index("audioclip-like")


@pytest.fixture(scope="module")
def assets(index) -> list[dict]:
    return index.store.assets.to_pylist()


def names(index, facets: Facets, where: str | None = None) -> set[str]:
    """The files a search over everything finds with these facets."""
    hits = index.search(text="x", target="all", k=50, where=facets.where(where))
    return {os.path.basename(h.path) for h in hits}


def expected(assets, keep) -> set[str]:
    return {os.path.basename(a["path"]) for a in assets if keep(a)}


def test_no_facets_no_filter():
    assert Facets().where() is None
    assert Facets().where("kind = 'audio'") == "(kind = 'audio')"


def test_each_facet_keeps_what_it_says(index, assets):
    assert names(index, Facets(kinds=("audio",))) == expected(
        assets, lambda a: a["kind"] == "audio"
    )
    assert names(index, Facets(kinds=("image", "video"))) == {"sky.png", "walk.mp4"}
    assert names(index, Facets(min_duration=5.0)) == {"storm.wav"}
    short = expected(assets, lambda a: a["duration"] is not None and a["duration"] <= 2.5)
    assert names(index, Facets(max_duration=2.5)) == short and "storm.wav" not in short
    folder = os.path.dirname(next(a["path"] for a in assets if a["path"].endswith("bark.wav")))
    dogs = expected(assets, lambda a: a["path"].startswith(folder + "/"))
    assert names(index, Facets(folder=folder)) == dogs and "bark.wav" in dogs
    assert "drops.wav" not in dogs
    assert names(index, Facets(folder=folder + "/")) == names(index, Facets(folder=folder))
    assert names(index, Facets(folder=folder[:-1])) == set()  # a folder, not a name prefix
    assert names(index, Facets(labels=("rain",))) == expected(
        assets, lambda a: "rain" in (a["labels"] or [])
    )
    times = sorted(a["mtime"] for a in assets)
    newest = Facets(modified_after=times[-1])
    assert names(index, newest) == expected(assets, lambda a: a["mtime"] >= times[-1])
    assert names(index, Facets(modified_before=times[0] - 1)) == set()


def test_facets_combine_with_each_other_and_with_sql(index):
    both = Facets(kinds=("audio",), labels=("rain",))
    assert names(index, both) == {"drops.wav", "storm.wav"}
    assert names(index, both, where="duration < 5") == {"drops.wav"}


@pytest.mark.parametrize(
    "hostile",
    ["x') OR TRUE OR ('", "rain' OR 1=1 --", "'; DROP TABLE assets; --", "a\\' OR TRUE"],
)
def test_a_value_cannot_change_the_filter(index, hostile):
    assert names(index, Facets(labels=(hostile,))) == set()
    assert names(index, Facets(folder=hostile)) == set()


def test_bad_values_are_parameter_errors():
    with pytest.raises(ParameterError, match="kind"):
        Facets(kinds=("audio", "movies")).where()
    with pytest.raises(ParameterError, match="finite"):
        Facets(min_duration=float("nan")).where()
    with pytest.raises(ParameterError, match="NUL"):
        Facets(folder="a\x00b").where()


def test_available_says_what_the_index_holds(index, assets):
    held = available(index.store)
    assert held["kinds"] == {
        k: sum(a["kind"] == k for a in assets)
        for k in ("audio", "image", "video", "text")
        if any(a["kind"] == k for a in assets)
    }
    durations = [a["duration"] for a in assets if a["duration"] is not None]
    assert held["duration"] == [min(durations), max(durations)]
    assert held["modified"] == [min(a["mtime"] for a in assets), max(a["mtime"] for a in assets)]
    labels = dict(held["labels"])
    assert labels == {
        label: sum(label in (a["labels"] or []) for a in assets)
        for label in {x for a in assets for x in (a["labels"] or [])}
    }
    assert np.all(np.diff([-c for _, c in held["labels"]]) >= 0)  # most common first
