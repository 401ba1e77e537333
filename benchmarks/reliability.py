"""The reliability report: every fault the suite injects, how many the store survived, and how
many items were lost.

Runs the reliability tests (crash points, power loss, corruptions, hostile inputs,
concurrency, disk full, the state machine) with $XSEARCH_RELIABILITY_LOG set; each test tallies
what it tried through tests/helpers/tally.py, and its assertions decide whether it held. Prints a
table per category and writes JSON.

    .venv/bin/python benchmarks/reliability.py [--out results.json] [-k EXPR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_FILES = [
    "tests/reliability/test_crash.py",
    "tests/reliability/test_power_loss.py",
    "tests/reliability/test_corruption.py",
    "tests/reliability/test_hostile.py",
    "tests/models/test_checkpoint.py",
    "tests/reliability/test_concurrency.py",
    "tests/reliability/test_disk_full.py",
    "tests/reliability/test_state_machine.py",
]


def run_tests(files: list[str], log: Path, junit: Path, select: str | None) -> int:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    cmd += ["-k", select] if select else []
    env = {**os.environ, "XSEARCH_RELIABILITY_LOG": str(log)}
    return subprocess.run([*cmd, *files], cwd=ROOT, env=env).returncode


def outcomes(junit: Path) -> dict[str, dict[str, int]]:
    """Per test file: tests passed, failed, skipped (from the JUnit XML)."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"passed": 0, "failed": 0, "skipped": 0})
    for case in ET.parse(junit).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")
        module = next((part for part in parts if part.startswith("test_")), "?")
        kinds = {child.tag for child in case}
        state = (
            "failed"
            if kinds & {"failure", "error"}
            else "skipped"
            if "skipped" in kinds
            else "passed"
        )
        out[module][state] += 1
    return dict(out)


def tally(log: Path) -> dict[str, dict]:
    categories: dict[str, dict] = {}
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    for row in rows:
        c = categories.setdefault(
            row["category"], {"tried": 0, "survived": 0, "lost_items": 0, "cases": 0}
        )
        c["tried"] += row["tried"]
        c["survived"] += row["survived"]
        c["lost_items"] += row["lost_items"]
        c["cases"] += 1
    return categories


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/reliability.json")
    parser.add_argument("-k", dest="select", help="pytest -k expression (a subset)")
    parser.add_argument("--files", nargs="*", default=None, help="test files (default: all)")
    args = parser.parse_args(argv)
    files = [f for f in (args.files or TEST_FILES) if (ROOT / f).exists()]
    with tempfile.TemporaryDirectory(prefix="xsearch-reliability-") as tmp:
        log, junit = Path(tmp) / "tally.jsonl", Path(tmp) / "junit.xml"
        code = run_tests(files, log, junit, args.select)
        categories, tests = tally(log), outcomes(junit)

    from rich.console import Console
    from rich.table import Table

    table = Table(title="reliability: faults injected and survived")
    for col in ("category", "kinds", "tried", "survived", "items lost"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for name, c in sorted(categories.items()):
        table.add_row(name, str(c["cases"]), f"{c['tried']:,}", f"{c['survived']:,}",
                      str(c["lost_items"]))  # fmt: skip
    Console().print(table)
    passed = sum(t["passed"] for t in tests.values())
    failed = sum(t["failed"] for t in tests.values())
    print(f"tests: {passed} passed, {failed} failed (pytest exit {code})")
    report = {"categories": categories, "tests": tests, "pytest_exit": code}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
