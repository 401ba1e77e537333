"""Weights resolution order and the missing-weights message."""

from __future__ import annotations

import pytest

from xsearch.errors import WeightsNotFound
from xsearch.models.weights import (
    RELEASES,
    install_hint,
    recorded_sha256,
    resolve_weights,
    sidecar_path,
    weights_dir,
    weights_sha256,
)


def test_explicit_path_wins_over_env_and_cache(tmp_path, monkeypatch):
    given, env = tmp_path / "given.pt", tmp_path / "env.pt"
    given.write_bytes(b"x")
    env.write_bytes(b"x")
    monkeypatch.setenv("XSEARCH_WEIGHTS", str(env))
    choice = resolve_weights(str(given))
    assert (choice.path, choice.source) == (given, "weights")


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
    assert str(weights_dir()) in message and "weights 'random'" in message
    assert "--" not in message and "\n" not in message  # neutral words, one line
    assert install_hint() in message  # written once, shown by the banner too
    assert info.value.exit_code == 2


def test_install_hint_names_the_command_the_file_and_the_folder():
    hint = install_hint()
    assert "xsearch model fetch" in hint and RELEASES["full"].filename in hint
    assert str(weights_dir()) in hint and "XSEARCH_WEIGHTS" in hint and "--" not in hint


def test_recorded_sha256_reads_the_sidecar_and_is_none_without_one(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"weights")
    assert recorded_sha256(path) is None and recorded_sha256(None) is None
    sidecar_path(path).write_text("ab" * 32 + "  w.pt\n")
    assert sidecar_path(path).name == "w.pt.sha256"
    assert recorded_sha256(path) == "ab" * 32
    sidecar_path(path).write_text("")  # an empty sidecar records nothing
    assert recorded_sha256(path) is None


def test_weights_sha256_prefers_the_record_and_hashes_otherwise(tmp_path):
    import hashlib

    path = tmp_path / "w.pt"
    path.write_bytes(b"weights")
    assert weights_sha256(path) == hashlib.sha256(b"weights").hexdigest()
    sidecar_path(path).write_text("cd" * 32 + "  w.pt\n")
    assert weights_sha256(path) == "cd" * 32


def test_fetch_writes_the_sidecar_the_readers_read(tmp_path):
    from xsearch.models.fetch import write_sidecar

    path = tmp_path / "w.pt"
    path.write_bytes(b"weights")
    write_sidecar(path, "ef" * 32)
    assert recorded_sha256(path) == "ef" * 32


def test_a_path_that_is_not_a_file_is_an_error(tmp_path):
    with pytest.raises(WeightsNotFound, match="not a file"):
        resolve_weights(str(tmp_path / "missing.pt"))
