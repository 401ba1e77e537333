"""Shared output: results on stdout, messages on stderr, and one-line errors."""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from xsearch.errors import ParameterError, XSearchError

out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error line and return the Exit to raise."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def handle_errors(func: F) -> F:
    """Turn the engine's errors into one line on stderr and a non-zero exit code, never a
    traceback (set XSEARCH_DEBUG=1 to see one for unexpected errors)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():  # restores the host's warning display afterwards
            warnings.showwarning = _show_warning
            return _run(func, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _run(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except ParameterError as e:
        raise fail(f"{option_name(e.param)}: {e.problem}", e.exit_code) from None
    except XSearchError as e:
        raise fail(str(e), e.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception as e:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise fail(_no_space(e)) from None
        if os.environ.get("XSEARCH_DEBUG"):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise fail(
            f"unexpected {type(e).__name__}: {first} (set XSEARCH_DEBUG=1 for a traceback)"
        ) from None


def option_name(param: str) -> str:
    """The command line's spelling of the API's parameter `param`: `k` -> `-k`,
    `fp16_index` -> `--fp16-index`."""
    return "-k" if param == "k" else "--" + param.replace("_", "-")


def _no_space(e: OSError) -> str:
    """A full disk or quota: what to do. A commit publishes all or nothing, so an index being
    written keeps its last complete generation, and the next writer removes the rest."""
    where = f" writing {e.filename}" if e.filename else ""
    return (
        f"disk full{where} ({os.strerror(e.errno)}): free some space and "
        "run it again; the index keeps its last complete generation"
    )


def random_weights_banner(how_to_install: str | None = None, model: str | None = None) -> None:
    """The loud warning shown whenever random weights are in use (with how to install the
    weights of `model`, default AudioCLIP)."""
    from xsearch.api import RANDOM_WEIGHTS_WARNING, install_hint

    err.print(
        Panel(
            f"[bold]{RANDOM_WEIGHTS_WARNING}[/]\n"
            f"Install the official weights: {how_to_install or install_hint(model)}",
            title="[bold red]random weights[/]",
            border_style="red",
        ),
        highlight=False,
    )


class DownloadBar:
    """A progress bar on stderr, started by the first bytes (none when the file is present)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, done: int, total: int | None) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        if self.bar is None:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=err,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=total)
        self.bar.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
