"""Evaluation results as the paper lays them out, as JSON, and as precision-recall plots."""

from __future__ import annotations

from pathlib import Path

from xsearch.eval.retrieval import PairResult

# The paper's P@1 / R@1 / mAP columns, then the standard metrics it does not report.
COLUMNS = ("P@1", "R@1", "mAP", "HR@1", "R@10", "MRR")


def pairs_table(dataset: str, results: list[PairResult], exact: list[PairResult] | None = None):
    """A rich table: dataset, query, result, metrics in %, queries; with the exact index's mAP
    and the difference when `exact` is given."""
    from rich.table import Table

    table = Table(title="retrieval (%)")
    for col in ("dataset", "query", "result", *COLUMNS, "queries"):
        table.add_column(col, justify="left" if col in ("dataset", "query", "result") else "right")
    if exact is not None:
        table.add_column("mAP exact", justify="right")
        table.add_column("Δ mAP", justify="right")
    for n, r in enumerate(results):
        cells = [dataset, r.query, r.result, *(_percent(r.metrics[c]) for c in COLUMNS)]
        cells.append(f"{r.metrics['queries']:,}")
        if exact is not None:
            full = exact[n].metrics["mAP"]
            cells += [_percent(full), _percent(r.metrics["mAP"] - full, sign=True)]
        table.add_row(*cells)
    return table


def _percent(value: float, sign: bool = False) -> str:
    if value != value:  # NaN: no query of the pairing had a relevant result
        return "–"
    return f"{100 * value:+.2f}" if sign else f"{100 * value:.2f}"


def plot_curves(results: list[PairResult], path: Path, title: str) -> None:
    """One precision-recall curve per pairing, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    for r in results:
        if r.curve is None:
            continue  # no query of this pairing had a relevant result
        recall, precision = r.curve
        ax.plot(
            recall, precision, label=f"{r.query} → {r.result} (mAP {100 * r.metrics['mAP']:.1f})"
        )
    ax.set(xlabel="recall", ylabel="interpolated precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
