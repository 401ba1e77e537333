"""Evaluation results laid out as the paper does: its columns, and precision-recall plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from xsearch.eval.retrieval import PairResult

# The paper's P@1 / R@1 / mAP columns, then the standard metrics it does not report.
COLUMNS = ("P@1", "R@1", "mAP", "HR@1", "R@10", "MRR")
# Caption retrieval (Clotho, AudioCaps): the caption-retrieval papers' columns.
CAPTION_COLUMNS = ("R@1", "R@5", "R@10", "mAP@10")


def plot_curves(results: Sequence[PairResult], path: str | Path, title: str) -> None:
    """One precision-recall curve per pairing, in one PNG."""
    # A Figure without pyplot: no display needed, and the host's backend is left alone.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5), dpi=120)
    ax = fig.subplots()
    for r in results:
        if r.curve is None:
            continue  # no query of this pairing had a relevant result
        recall, precision = r.curve
        name = "mAP" if "mAP" in r.metrics else "mAP@10"
        scored = f" {r.aggregate}" if r.aggregate else ""  # files scored by their items
        label = f"{r.query} → {r.result}{scored} ({name} {100 * r.metrics[name]:.1f})"
        ax.plot(recall, precision, label=label)
    ax.set(xlabel="recall", ylabel="interpolated precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
