"""`xsearch eval`: retrieval quality of an index, or of a labelled dataset ingested for it."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from xsearch.cli.common import install_hint, open_encoder
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
    check_placement,
)


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
            "manifest) into the index eval-KIND, then evaluate it.",
            show_default=False,
        ),
    ] = None,
    pairs: Annotated[
        str | None,
        typer.Option(help="Pairings QUERY:RESULT, e.g. text:audio,audio:image (default: all)."),
    ] = None,
    relevance: Annotated[
        Relevance, typer.Option(help="same: equal label sets (the paper); any: a shared label.")
    ] = Relevance.same,
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
    """P@1, R@1, mAP (and HR@k, MRR, zero-shot accuracy) for every pairing of text, image and
    audio, on the vectors the index serves."""
    from xsearch.api import open_index
    from xsearch.errors import UsageError
    from xsearch.eval.report import pairs_table, plot_curves
    from xsearch.eval.retrieval import Evaluation, parse_pairs

    if (index is None) == (dataset is None):
        raise UsageError("give --index NAME or --dataset KIND ROOT")
    chosen = parse_pairs(pairs)
    check_placement(gpu, fp16_index)  # before a dataset is ingested
    if dataset is not None:
        index = _ingest_dataset(*dataset, weights, config, device, batch_size)
    idx = open_index(index, device=device, gpu=gpu, fp16_index=fp16_index)
    if idx.store.manifest.model.get("weights") == "random":
        random_weights_banner(install_hint())
    knobs = {"nprobe": nprobe, "ef": ef, "k_factor": k_factor}
    run = Evaluation(idx, relevance.value, **knobs)
    results = run.pairs(chosen, curves=plot is not None)
    exact = None
    if compare_exact:
        exact_run = Evaluation(idx, relevance.value, exact=True)
        exact = [exact_run.pair(r.query, r.result) for r in results]
    zero_shot = {}
    for modality in ("audio", "image"):
        try:
            zero_shot[modality] = run.zero_shot(modality)
        except UsageError:
            pass  # no single-label items of that modality
    name = dataset[0] if dataset else index
    report = {
        "index": index,
        "relevance": relevance.value,
        "pairs": [r.as_dict() for r in results],
        "zero_shot": zero_shot,
    }
    if exact is not None:
        report["exact"] = [r.as_dict() for r in exact]
    if as_json:
        print(json.dumps(report))
    else:
        out.print(pairs_table(name, results, exact))
        for modality, z in zero_shot.items():
            out.print(
                f"zero-shot {modality} -> class names: {100 * z['accuracy']:.2f} % "
                f"({z['items']:,} items, {z['classes']} classes)",
                highlight=False,
            )
    if out_file:
        out_file.write_text(json.dumps(report, indent=1))
    if plot:
        plot_curves(results, plot, f"{name}: precision-recall ({relevance.value} labels)")
        if not as_json:
            out.print(f"wrote {plot}", highlight=False)


def _ingest_dataset(kind: str, root: Path, weights, config, device, batch_size) -> str:
    """Ingest the dataset's files with their labels into index eval-KIND; returns its name."""
    from xsearch.eval.datasets import build_index, eval_index_name, load_dataset
    from xsearch.store.store import index_dir

    records = load_dataset(kind, root.expanduser())
    name = eval_index_name(kind)
    encoder = open_encoder(weights, config, device, batch_size)
    report = build_index(records, index_dir(name), encoder)
    left_out = len(report.missing) + len(records.skipped)
    if left_out:
        first = (report.missing + records.skipped)[0]
        err.print(f"[yellow]{left_out} records left out, e.g. {first[0]}: {first[1]}[/]")
    return name
