"""Benchmark scripts: each runs on its own, prints a table and writes its results as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def publish(result: dict, out: Path | None, print_table: Callable[[dict], None]) -> None:
    """The end of a benchmark run: its table on stdout, its result as JSON at `out`."""
    print_table(result)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")


def run_main(parse_args, run, print_table, argv: list[str] | None = None) -> int:
    """A benchmark's `main`: parse its arguments, run it, publish the result."""
    args = parse_args(argv)
    publish(run(args), args.out, print_table)
    return 0
