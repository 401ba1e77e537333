"""Weights resolution order and the missing-weights message."""

from __future__ import annotations

import pytest

from xsearch.errors import WeightsNotFound
from xsearch.models.weights import RELEASES, resolve_weights, weights_dir


def test_explicit_path_wins_over_env_and_cache(tmp_path, monkeypatch):
    given, env = tmp_path / "given.pt", tmp_path / "env.pt"
    given.write_bytes(b"x")
    env.write_bytes(b"x")
    monkeypatch.setenv("XSEARCH_WEIGHTS", str(env))
    choice = resolve_weights(str(given))
    assert (choice.path, choice.source) == (given, "--weights")


def test_env_then_cache(tmp_path, monkeypatch):
    cached = weights_dir() / RELEASES["partial"].filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert resolve_weights().path == cached
    env = tmp_path / "env.pt"
    env.write_bytes(b"x")
    monkeypatch.setenv("XSEARCH_WEIGHTS", str(env))
    assert resolve_weights().source == "XSEARCH_WEIGHTS"


def test_full_is_preferred_over_partial_in_the_cache():
    for release in RELEASES.values():
        path = weights_dir() / release.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert resolve_weights().path.name == RELEASES["full"].filename


def test_random_is_explicit():
    assert resolve_weights("random").is_random


def test_missing_weights_message_says_where_to_put_them():
    with pytest.raises(WeightsNotFound) as info:
        resolve_weights()
    message = str(info.value)
    assert "xsearch model fetch" in message
    assert str(weights_dir()) in message and "--weights random" in message
    assert info.value.exit_code == 2


def test_a_path_that_is_not_a_file_is_an_error(tmp_path):
    with pytest.raises(WeightsNotFound, match="not a file"):
        resolve_weights(str(tmp_path / "missing.pt"))
