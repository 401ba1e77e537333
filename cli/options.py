"""Options shared by several commands, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

Weights = Annotated[
    str | None,
    typer.Option(
        "--weights",
        "-w",
        help="AudioCLIP checkpoint path, or 'random' (meaningless results, for trying the "
        "pipeline). Default: $XSEARCH_WEIGHTS, then the cache (see `xsearch model info`).",
        show_default=False,
    ),
]
Config = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="Model config name (default: detected from the checkpoint; 'audioclip' for random).",
        show_default=False,
    ),
]
Device = Annotated[
    str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")
]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Items per model call.")]
Json = Annotated[
    bool, typer.Option("--json", help="One JSON object per line on stdout, for scripts.")
]
IndexName = Annotated[
    str,
    typer.Option(
        "--index", "-i", help="Index name (a folder under $XSEARCH_HOME, default ./indexes)."
    ),
]
