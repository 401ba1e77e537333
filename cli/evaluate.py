"""`xsearch eval`: retrieval quality of an index, or of a labelled or captioned dataset ingested
for it."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from xsearch.cli.console import err, handle_errors, out, random_weights_banner
from xsearch.cli.options import (
    BatchSize,
    Config,
    Device,
    Fp16Index,
    Gpu,
    Json,
    KFactor,
    Weights,
)

if TYPE_CHECKING:
    from rich.table import Table

    from xsearch.api import EvaluationResult, PairResult


class Relevance(str, Enum):
    same = "same"
    any = "any"


@handle_errors
def evaluate(
    index: Annotated[
        str | None, typer.Option("--index", "-i", help="Evaluate this index (its labels).")
    ] = None,
    dataset: Annotated[
        tuple[str, Path] | None,
        typer.Option(
            help="KIND ROOT: ingest a labelled dataset (esc50, urbansound8k, audioset, folders, "
            "manifest, av-pairs) or a caption dataset (clotho, audiocaps: text<->audio "
            "R@1/5/10, mAP@10) into the index eval-KIND, then evaluate it.",
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="With --dataset clotho (development, validation, evaluation) or audiocaps "
            "(train, val, test): the split to evaluate (default: evaluation / test).",
            show_default=False,
        ),
    ] = None,
    skip_missing: Annotated[
        bool,
        typer.Option(
            "--skip-missing",
            help="With --dataset clotho or audiocaps: leave out listed clips without a file "
            "(counted) instead of stopping.",
        ),
    ] = False,
    prompt: Annotated[
        str | None,
        typer.Option(
            help="Zero-shot prompt: a template whose {} the class name replaces, e.g. "
            "'This is a sound of {}.' (default: the bare class name).",
            show_default=False,
        ),
    ] = None,
    pairs: Annotated[
        str | None,
        typer.Option(
            help="Pairings QUERY:RESULT, e.g. text:audio,audio:image (default: every pairing "
            "of the index's modalities)."
        ),
    ] = None,
    relevance: Annotated[
        Relevance, typer.Option(help="same: equal label sets (the paper); any: a shared label.")
    ] = Relevance.same,
    aggregate: Annotated[
        str | None,
        typer.Option(
            metavar="central|mean|max",
            help="Score files, not items: a video's frames and a recording's windows together "
            "(central: the middle one, the paper's protocol; mean: their mean vector; max: the "
            "best pair), shown beside central.",
            show_default=False,
        ),
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the results as JSON here.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write precision-recall curves to this PNG.")
    ] = None,
    compare_exact: Annotated[
        bool,
        typer.Option(
            "--compare-exact", help="Also rank exactly: what the approximate index costs."
        ),
    ] = False,
    nprobe: Annotated[int | None, typer.Option(min=1, help="IVF indexes: lists to visit.")] = None,
    ef: Annotated[int | None, typer.Option(min=1, help="HNSW indexes: search breadth.")] = None,
    k_factor: KFactor = None,
    weights: Weights = None,
    config: Config = None,
    device: Device = "auto",
    gpu: Gpu = False,
    fp16_index: Fp16Index = False,
    batch_size: BatchSize = 16,
    as_json: Json = False,
) -> None:
    """P@1, R@1, mAP (and HR@k, MRR, zero-shot accuracy) for every pairing of the index's
    modalities, on the vectors the index serves; for caption datasets, text->audio and
    audio->text R@1, R@5, R@10 and mAP@10."""
    import xsearch.api as api
    from xsearch.errors import UsageError

    if (index is None) == (dataset is None):
        raise UsageError("give --index NAME or --dataset KIND ROOT")
    adapter: dict[str, Any] = {"split": split} if split is not None else {}
    if skip_missing:
        adapter["skip_missing"] = True
    if adapter and dataset is None:
        raise UsageError(f"--{next(iter(adapter)).replace('_', '-')} applies to --dataset")
    options: dict[str, Any] = {
        "pairs": pairs,
        "relevance": relevance.value,
        "compare_exact": compare_exact,
        "nprobe": nprobe,
        "ef": ef,
        "k_factor": k_factor,
        "curves": plot is not None,
        "prompt": prompt,
        "aggregate": aggregate,
    }
    warned = False
    if dataset is not None:
        if weights == "random":  # warn before the slow ingest, not after it
            random_weights_banner(model=config)
            warned = True
        kind, root = dataset
        result = api.evaluate_dataset(
            kind, root, weights=weights, config=config, device=device, batch_size=batch_size,
            gpu=gpu, fp16_index=fp16_index, options=adapter or None, **options,
        )  # fmt: skip
    else:
        idx = api.open_index(
            index, weights=weights, config=config, device=device, batch_size=batch_size,
            gpu=gpu, fp16_index=fp16_index,
        )  # fmt: skip
        result = api.evaluate(idx, **options)
    if result.random_weights and not warned:
        random_weights_banner()
    if result.left_out:
        from rich.markup import escape

        path, why = result.left_out[0]
        err.print(
            f"[yellow]{len(result.left_out)} records left out, e.g. {escape(f'{path}: {why}')}[/]",
            highlight=False,
            soft_wrap=True,
        )
    report = result.as_dict()
    if as_json:
        print(json.dumps(report))
    else:
        _print_whole(_table(result))
        for modality, z in result.zero_shot.items():
            out.print(
                f"zero-shot {modality} -> class names: {100 * z['accuracy']:.2f} % "
                f"({z['items']:,} items, {z['classes']} classes)",
                highlight=False,
                soft_wrap=True,
            )
    if out_file:
        out_file.write_text(json.dumps(report, indent=1))
    if plot:
        result.write_plot(plot)
        if not as_json:
            out.print(f"wrote {plot}", highlight=False, soft_wrap=True)


def _table(result: EvaluationResult) -> Table:
    """Name, query, result, the headline metrics in %, queries; with the exact ranking's mAP
    and the difference when the result has it. With an aggregate, each pairing's central row
    comes first, then the aggregate's, named in an `aggregate` column."""
    from rich.table import Table

    title = "caption retrieval (%)" if result.protocol == "captions" else "retrieval (%)"
    table = Table(title=title)
    names = ("dataset", "query", "result", *(("aggregate",) if result.aggregate else ()))
    for col in (*names, *result.columns, "queries"):
        table.add_column(col, justify="left" if col in names else "right")
    ap = result.map_metric
    if result.exact is not None:
        table.add_column(f"{ap} exact", justify="right")
        table.add_column(f"Δ {ap}", justify="right")
    for n, row in enumerate(result.rows):
        if result.central is not None:
            exact = result.central_exact[n] if result.central_exact is not None else None
            table.add_row(*_cells(result, result.central[n], exact))
        table.add_row(*_cells(result, row, result.exact[n] if result.exact is not None else None))
    return table


def _cells(result: EvaluationResult, row: PairResult, exact: PairResult | None) -> list[str]:
    """One row of the table: a pairing's metrics, scored one way."""
    cells = [result.name, row.query, row.result]
    if result.aggregate:
        cells.append(row.aggregate or "")
    cells += [_percent(row.metrics[c]) for c in result.columns]
    cells.append(f"{row.metrics['queries']:,}")
    if result.exact is not None:
        ap = result.map_metric
        full = exact.metrics[ap] if exact is not None else float("nan")
        cells += [_percent(full), _percent(row.metrics[ap] - full, sign=True)]
    return cells


def _print_whole(table: Table) -> None:
    """Print `table` on stdout at its natural width when stdout is not a terminal: rich
    assumes 80 columns for a pipe or a file, which would squeeze and cut the table."""
    if out.is_terminal:
        out.print(table)
        return
    from rich.console import Console
    from rich.measure import Measurement

    natural = Measurement.get(out, out.options.update_width(10_000), table).maximum
    wide = Console(file=out.file, width=max(natural, out.width), color_system=out.color_system)
    wide.print(table)


def _percent(value: float, sign: bool = False) -> str:
    if value != value:  # NaN: no query of the pairing had a relevant result
        return "–"
    return f"{100 * value:+.2f}" if sign else f"{100 * value:.2f}"
