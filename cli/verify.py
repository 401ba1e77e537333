"""`xsearch verify`: check an index file by file; `--repair` rebuilds what can be rebuilt."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from xsearch.cli.console import err, handle_errors, out
from xsearch.cli.options import IndexName, Json


@handle_errors
def verify(
    index: IndexName = "default",
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Rebuild damaged FAISS indexes and reference samples from the stored "
            "embeddings, restore a damaged manifest from its kept copy, and, when source data "
            "is damaged, go back to the previous generation if it is intact.",
        ),
    ] = False,
    as_json: Json = False,
) -> None:
    """Check every file of an index against its manifest (size, sha256, content, agreement).
    Exit status 0 when the index is healthy, 1 when it is not."""
    import xsearch

    idx = xsearch.open(index)
    if repair:
        report = idx.repair()
        before, after = report.before, report.after
        actions, lost = report.actions, report.lost
    else:
        before = after = idx.verify()
        actions, lost = [], []
    summary = {
        "index": index,
        "generation": after.generation,
        "healthy": after.healthy,
        "problems": sum(not c.ok for c in after.checks),
    }
    if repair:
        summary |= {"repaired": actions, "lost": lost, "lost_items": report.lost_items}
    if as_json:
        for check in before.checks:
            print(json.dumps(check.as_dict()))
        if repair and after is not before:
            for check in after.checks:
                print(json.dumps({**check.as_dict(), "after_repair": True}))
        print(json.dumps(summary))
    else:
        _show(before.checks)
        for action in actions:
            out.print(f"[green]repaired:[/] {action}", highlight=False, soft_wrap=True)
        for line in lost:
            err.print(f"[bold red]lost:[/] {line}", highlight=False, soft_wrap=True)
        if repair and after is not before and not after.healthy:
            _show([c for c in after.checks if not c.ok], "after repair")
        _verdict(summary, repair)
    if not after.healthy:
        raise typer.Exit(1)


def _show(checks, title: str | None = None) -> None:
    if title:
        out.print(f"{title}:", highlight=False)
    for c in checks:
        mark = "[green]ok[/]     " if c.ok else "[bold red]PROBLEM[/]"
        line = f"  {mark} {c.file}" + (f" ({c.role})" if c.role != c.file else "")
        if c.problem:
            line += f": {c.problem}"
        if c.note:
            line += f" [dim]({c.note})[/]"
        out.print(line, highlight=False, soft_wrap=True)


def _verdict(summary: dict, repair: bool) -> None:
    name, gen = summary["index"], summary["generation"]
    if summary["healthy"]:
        out.print(f"{name}: healthy (generation {gen})", highlight=False)
    elif repair:
        err.print(f"[bold red]{name}: still damaged after repair[/]", highlight=False)
    else:
        err.print(
            f"[bold red]{name}: {summary['problems']} problems[/]; "
            f"run `xsearch verify --repair --index {name}`",
            highlight=False,
            soft_wrap=True,
        )
