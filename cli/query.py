"""`xsearch query`: text, image, audio, video or item queries against one index or several."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from xsearch.cli.common import open_index
from xsearch.cli.console import err, handle_errors, out, random_weights_banner
from xsearch.cli.options import Device, Fp16Index, Gpu, Json, KFactor, Precision, Weights
from xsearch.errors import UsageError

WEIGHT_HELP = " Append ^W to weigh it in the fusion, e.g. 'rain^2' or 'dog.wav^-0.5'."
_WEIGHT = re.compile(r"^(.*)\^([-+]?(?:\d+\.?\d*|\.\d+))$", re.DOTALL)

Indexes = Annotated[
    list[str] | None,
    typer.Option(
        "--index",
        "-i",
        help="Index name (default: default), a folder under $XSEARCH_HOME (else ./indexes). "
        "Repeat it to search several indexes at once, each with its own model, in one ranking "
        "by score.",
        show_default=False,
    ),
]


@handle_errors
def query(
    text: Annotated[
        list[str] | None, typer.Option("--text", "-t", help="Query text." + WEIGHT_HELP)
    ] = None,
    image: Annotated[
        list[str] | None, typer.Option("--image", help="Query image file.", show_default=False)
    ] = None,
    audio: Annotated[
        list[str] | None, typer.Option("--audio", help="Query audio file.", show_default=False)
    ] = None,
    video: Annotated[
        list[str] | None,
        typer.Option("--video", help="Query video (its frame and sound).", show_default=False),
    ] = None,
    like: Annotated[
        list[str] | None,
        typer.Option("--like", help="An indexed item's id: search with its stored vector."),
    ] = None,
    target: Annotated[
        str,
        typer.Option(
            help="What to find: audio, image, text (the index's modalities), video, or all."
        ),
    ] = "audio",
    k: Annotated[int, typer.Option("-k", help="Number of results.")] = 10,
    index: Indexes = None,
    where: Annotated[
        str | None,
        typer.Option(
            help="SQL filter over item and asset columns, e.g. \"kind = 'video' AND start > 60\"."
        ),
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option(
            help="Relevance cutoff, the same for every pairing (background spreads above the "
            "query's typical unrelated item of that modality; 3 is a good start)."
        ),
    ] = None,
    exclude_self: Annotated[
        bool,
        typer.Option("--exclude-self", help="Leave out indexed copies of the query files/items."),
    ] = False,
    nprobe: Annotated[
        int | None, typer.Option(min=1, help="IVF indexes: inverted lists to visit.")
    ] = None,
    ef: Annotated[int | None, typer.Option(min=1, help="HNSW indexes: search breadth.")] = None,
    k_factor: KFactor = None,
    per_file: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Hits of one file at most (default: one frame per video for --target image, "
            "every window and text; for video and all, each file's best moment only).",
        ),
    ] = None,
    by_file: Annotated[
        bool,
        typer.Option(
            "--by-file",
            help="Rank files by their best item of the target (as video and all do), each "
            "with its next best up to --per-file.",
        ),
    ] = False,
    weights: Weights = None,
    device: Device = "auto",
    precision: Precision = "fp32",
    gpu: Gpu = False,
    fp16_index: Fp16Index = False,
    in_process: Annotated[
        bool,
        typer.Option(
            "--in-process",
            help="Search in this process even when a running `xsearch serve` holds the index.",
        ),
    ] = False,
    as_json: Json = False,
) -> None:
    """Find what is nearest to the queries in the shared space (several are fused).

    When `xsearch serve` (or `xsearch serve --local-only`) of this user holds the index, it
    answers, with the same results and no model loaded here; --weights, --device, --gpu and
    --fp16-index choose how to search, so with any of them the search runs in this process.
    Several --index: each embeds the query with its own model, in this process; indexes that
    cannot answer it are skipped, with the reason on stderr."""
    queries = dict(
        text=[weighted(q, False) for q in text or ()],
        image=[weighted(q) for q in image or ()],
        audio=[weighted(q) for q in audio or ()],
        video=[weighted(q) for q in video or ()],
        like=[_item(q) for q in like or ()],
        target=target,
        k=k,
        where=where,
        exclude_self=exclude_self,
        min_score=min_score,
        nprobe=nprobe,
        ef=ef,
        k_factor=k_factor,
        per_file=per_file,
        by_file=by_file,
    )
    names = index or ["default"]
    if len(names) > 1:
        how = dict(weights=weights, device=device, precision=precision, gpu=gpu)
        _query_several(names, queries, how, fp16_index, as_json)
        return
    answer = None
    own_model = weights or device != "auto" or precision != "fp32"  # the resident's may differ
    if not (in_process or own_model or gpu or fp16_index):
        answer = _ask_resident(names[0], queries)
    if answer is not None:
        hits, searcher = answer.hits, f"answered by the resident process (pid {answer.pid})"
    else:
        idx = open_index(
            names[0],
            weights=weights,
            device=device,
            gpu=gpu,
            fp16_index=fp16_index,
            precision=precision,
        )
        hits, searcher = idx.search(**queries), "searched in this process"
    if as_json:
        for hit in hits:
            print(json.dumps({**hit.as_dict(), "generation": hits.generation}))
    else:
        _table(hits)
    if err.is_terminal:
        err.print(f"[dim]generation {hits.generation} · {searcher}[/dim]", highlight=False)


def _query_several(
    names: list[str], queries: dict, how: dict, fp16_index: bool, as_json: bool
) -> None:
    """One ranking over several indexes, searched in this process."""
    from xsearch.api import search_indexes

    if queries.pop("like"):
        raise UsageError("--like takes item ids, which belong to one index: give one --index")
    if how.pop("weights"):
        raise UsageError(
            "--weights names one model's checkpoint; with several --index each index loads "
            "its own model's weights from the cache (see `xsearch model fetch`)"
        )
    hits = search_indexes(names, **queries, **how, fp16_index=fp16_index)
    if hits.random_weights:
        random_weights_banner()
    for name, reason in hits.skipped.items():
        err.print(f"[yellow]skipped[/] index {escape(name)}: {escape(reason)}", highlight=False)
    if as_json:
        for hit in hits:
            print(json.dumps({**hit.as_dict(), "generation": hits.generations[hit.index]}))
    else:
        _table(hits, with_index=True)
    if err.is_terminal:
        searched = ", ".join(f"{n} generation {g}" for n, g in hits.generations.items())
        err.print(f"[dim]{escape(searched)} · searched in this process[/dim]", highlight=False)


def _ask_resident(index: str, queries: dict):
    """The answer of the resident process holding `index`, or None when there is none (the
    random-weights banner shows as an in-process search shows it)."""
    from xsearch.api import search_resident

    answer = search_resident(index, **queries)
    if answer is not None and answer.random_weights:
        random_weights_banner()
    return answer


def weighted(value: str, is_file: bool = True) -> tuple[str, float]:
    """'query^W' -> (query, W). A file whose own name ends in ^W is taken as it is."""
    match = _WEIGHT.match(value)
    if not match or (is_file and Path(value).exists()):
        return value, 1.0
    return match.group(1), float(match.group(2))


def _item(value: str) -> tuple[int, float]:
    item, weight = weighted(value, False)
    try:
        return int(item), weight
    except ValueError:
        raise UsageError(f"--like takes an item id (an integer), not {item!r}") from None


def _table(hits, with_index: bool = False) -> None:
    from rich.table import Table

    if not hits:
        out.print("no results")
        return
    table = Table()
    columns = ("#", *(["index"] if with_index else []), "score", "cos", "path", "match")
    for col in (*columns, "labels", "item"):
        right = col in ("#", "score", "cos", "item")
        table.add_column(col, justify="right" if right else "left", overflow="fold")
    for h in hits:
        table.add_row(
            str(h.rank),
            *([h.index] if with_index else []),
            f"{h.score:.2f}",
            f"{h.cosine:.3f}",
            h.path,
            describe_match(h),
            ", ".join(h.labels),
            str(h.item_id),
        )
    out.print(table)
    out.print(
        "[dim]score: background spreads above the query's typical unrelated item of that "
        "modality (comparable across modalities); cos: raw cosine[/dim]"
    )


def describe_match(hit) -> str:
    """Which item of the asset matched, and when: 'audio 10.0-20.0 s', 'frame at 2.5 s' (a
    central frame), 'frame 4.0-6.0 s' (a frame over time, until the next one)."""
    if hit.modality == "image" and hit.start is not None:
        if hit.end is not None and hit.end > hit.start:
            return f"frame {hit.start:.1f}-{hit.end:.1f} s"
        return f"frame at {hit.start:.1f} s"
    if hit.start is not None:
        return f"{hit.modality} {hit.start:.1f}-{hit.end:.1f} s"
    return hit.modality
