"""The `xsearch` application. Heavy libraries load inside commands, so `--help` is instant."""

from __future__ import annotations

from typing import Annotated

import typer

from xsearch import __version__, tune_threads
from xsearch.cli import demo, embed, evaluate, ingest, model, query, serve, status, verify

app = typer.Typer(
    name="xsearch",
    help="Cross-modal media search: text, images, audio and video in AudioCLIP's shared space.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(embed.app, name="embed")
app.add_typer(model.app, name="model")
app.add_typer(status.index_app, name="index")
app.command("demo")(demo.demo)
app.command("ingest")(ingest.ingest)
app.command("query")(query.query)
app.command("serve")(serve.serve)
app.command("status")(status.status)
app.command("eval")(evaluate.evaluate)
app.command("verify")(verify.verify)


def _version(value: bool) -> None:
    if value:
        print(f"xsearch {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Cross-modal media search: text, images, audio and video in AudioCLIP's shared space."""


def run() -> None:
    """The console script: tunes the thread pools first (before numpy, torch or faiss load),
    then runs the command."""
    tune_threads()
    app()
