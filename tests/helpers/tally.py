"""Tally of the reliability tests, for benchmarks/reliability.py.

A test that tries many faults calls `record(...)` once per fault kind or per run with how many
cases it tried, how many the store survived (the promise held) and how many items were lost.
It writes one JSON line to the file named by $XSEARCH_RELIABILITY_LOG, and nothing otherwise;
the assertions stay in the tests: a tally never replaces one."""

from __future__ import annotations

import json
import os


def record(category: str, case: str, tried: int, survived: int, lost_items: int = 0) -> None:
    """`category`: crash points, power loss, corruptions, hostile inputs, concurrency,
    disk full, state machine. `case`: what was tried, e.g. 'write-faiss-audio'."""
    log = os.environ.get("XSEARCH_RELIABILITY_LOG")
    if not log:
        return
    row = {"category": category, "case": case, "tried": tried, "survived": survived,
           "lost_items": lost_items}  # fmt: skip
    with open(log, "a") as f:
        f.write(json.dumps(row) + "\n")
