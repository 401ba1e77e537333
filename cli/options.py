"""Options shared by several commands, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

Weights = Annotated[
    str | None,
    typer.Option(
        "--weights",
        "-w",
        help="Checkpoint path, or 'random' (meaningless results, for trying the pipeline). "
        "Default: $XSEARCH_WEIGHTS, then the cache (see `xsearch model info`); an existing "
        "index checks they are the ones it was built with.",
        show_default=False,
    ),
]
Config = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        "--config",
        help="Model name, see `xsearch model list` (default: an existing index's model, else "
        "audioclip; a checkpoint's config is detected). --config is the older spelling.",
        show_default=False,
    ),
]
Device = Annotated[
    str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")
]
Precision = Annotated[
    str,
    typer.Option(
        "--precision",
        help="Model arithmetic: fp32 (exact, the default), bf16, or int8 (CPU; text layers only).",
    ),
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
Gpu = Annotated[
    bool, typer.Option("--gpu", help="Search on the GPU(s) with faiss-gpu (sharded over several).")
]
Fp16Index = Annotated[
    bool,
    typer.Option(
        "--fp16-index", help="With --gpu: store vectors as float16 (half the GPU memory)."
    ),
]
KFactor = Annotated[
    float | None,
    typer.Option(
        "--k-factor",
        min=1,
        help="Refined indexes (...,RFlat): re-rank k x this many candidates exactly "
        "(default: the index's, 16).",
        show_default=False,
    ),
]


def check_placement(gpu: bool, fp16_index: bool) -> None:
    """Refuse --gpu / --fp16-index now, in one line, when they cannot apply (no faiss-gpu or
    no CUDA GPU, --fp16-index without --gpu), before any slow work."""
    from xsearch.api import check_placement as check

    check(gpu, fp16_index)
