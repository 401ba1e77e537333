"""Issue 17, item 12: query files are decoded in workers started once and reused (a fresh
worker's start cost more than decoding a small file), with the same limits as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.media_tree import make_media
from xsearch.errors import MediaError
from xsearch.server.uploads import QueryDecoders


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return make_media(tmp_path_factory.mktemp("decoders") / "media")


def test_one_worker_decodes_query_after_query(media):
    decoders = QueryDecoders(timeout=30, memory_mb=2048)
    try:
        decoders.warm()
        (first,) = decoders.worker_pids()
        for path in (media / "rain" / "sky.png", media / "dogs" / "bark.wav"):
            decoders.check(path)
            assert decoders.worker_pids() == [first]
    finally:
        decoders.close()
    assert decoders.worker_pids() == []


def test_a_bad_file_fails_alone_and_the_worker_goes_on(media, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage" * 50)
    decoders = QueryDecoders(timeout=30, memory_mb=2048)
    try:
        decoders.check(media / "rain" / "sky.png")
        (worker,) = decoders.worker_pids()
        with pytest.raises(MediaError):
            decoders.check(bad)
        decoders.check(media / "dogs" / "bark.wav")
        assert decoders.worker_pids() == [worker]
    finally:
        decoders.close()


def test_a_file_over_the_time_limit_costs_its_worker_and_the_next_file_gets_another(media):
    decoders = QueryDecoders(timeout=0.001, memory_mb=2048)
    try:
        decoders.warm()
        (worker,) = decoders.worker_pids()
        with pytest.raises(MediaError, match="timed out"):
            decoders.check(media / "dogs" / "walk.mp4")
        assert decoders.worker_pids() and decoders.worker_pids() != [worker]
    finally:
        decoders.close()


def test_closed_decoders_refuse_new_files(media):
    decoders = QueryDecoders(timeout=30, memory_mb=2048)
    decoders.close()
    with pytest.raises(MediaError, match="stopping"):
        decoders.check(media / "rain" / "sky.png")
