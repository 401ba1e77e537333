"""Issue 17, item 2: a `where` filter is user SQL that can be made to run for hours; each one
is interrupted past its time, in one line, and does not hold up other filtered searches."""

from __future__ import annotations

import threading
import time

import pytest

from tests.helpers.store import MODEL, add_asset, unit
from xsearch.errors import ParameterError
from xsearch.search.engine import SearchOptions, search
from xsearch.store.store import Changes, Store, Writer

SLOW = "(SELECT sum(hash(a.range + b.range)) FROM range(300000) a, range(100000) b) <> 0"


@pytest.fixture
def store(tmp_path) -> Store:
    with Writer(tmp_path / "idx", MODEL) as writer:
        changes = Changes()
        for n in range(4):
            add_asset(writer, changes, f"/m/{n}.wav", 3, seed=n, dim=16)
        writer.commit(changes)
    return Store.open(tmp_path / "idx")


def test_a_slow_filter_is_interrupted_in_one_line(store, monkeypatch):
    monkeypatch.setenv("XSEARCH_WHERE_SECONDS", "0.5")
    outcome: list[BaseException] = []

    def slow() -> None:
        try:
            search(store, unit(1, 9, 16)[0], "audio", 3, SearchOptions(where=SLOW))
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=slow, daemon=True)  # unbounded, it would run for hours
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the filter was not interrupted"
    (error,) = outcome
    assert isinstance(error, ParameterError)
    assert "the filter ran longer than 0.5 s" in str(error) and "\n" not in str(error)
    hits = search(store, unit(1, 9, 16)[0], "audio", 3, SearchOptions(where="start >= 10"))
    assert hits and all(h.start >= 10 for h in hits)  # the store answers filters after it


def test_a_slow_filter_does_not_hold_up_another(store, monkeypatch):
    monkeypatch.setenv("XSEARCH_WHERE_SECONDS", "3")
    failed = []

    def slow() -> None:
        try:
            search(store, unit(1, 9, 16)[0], "audio", 3, SearchOptions(where=SLOW))
        except ParameterError as e:
            failed.append(e)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)  # the slow filter is running
    began = time.perf_counter()
    hits = search(store, unit(1, 9, 16)[0], "audio", 3, SearchOptions(where="start >= 10"))
    waited = time.perf_counter() - began
    thread.join()
    assert hits and waited < 1.5, waited  # not the slow one's 3 s
    assert len(failed) == 1


def test_the_limit_must_be_a_positive_number(store, monkeypatch):
    from xsearch.errors import UsageError

    monkeypatch.setenv("XSEARCH_WHERE_SECONDS", "soon")
    with pytest.raises(UsageError, match="XSEARCH_WHERE_SECONDS"):
        search(store, unit(1, 9, 16)[0], "audio", 3, SearchOptions(where="start >= 0"))
