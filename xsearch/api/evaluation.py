"""Retrieval quality of an index, or of a labelled dataset ingested for it.

    result = xsearch.api.evaluate(xsearch.open("media"), pairs="text:audio")
    result = xsearch.api.evaluate_dataset("esc50", "ESC-50-master", curves=True)
    result.rows[0].metrics["mAP"], result.as_dict(), result.write_plot("pr.png")

The metrics are those of the vectors the index serves (see `xsearch.eval.retrieval`): text
queries are the index's label sets, image and audio queries its labelled items.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from xsearch.errors import ParameterError, UsageError
from xsearch.eval.datasets import ADAPTERS
from xsearch.eval.report import COLUMNS
from xsearch.eval.retrieval import RELEVANCE, PairResult

if TYPE_CHECKING:
    from xsearch.api.index import Index
    from xsearch.eval.build import BuildReport
    from xsearch.models.spec import Encoder

__all__ = ["DATASET_KINDS", "EvaluationResult", "evaluate", "evaluate_dataset", "write_plot"]

DATASET_KINDS: tuple[str, ...] = tuple(ADAPTERS)  # what evaluate_dataset reads

Pairs = str | Iterable[tuple[str, str] | str] | None


@dataclass
class EvaluationResult:
    """One evaluation: a row of metrics per pairing (fractions in [0, 1]; NaN where no query
    had a relevant result), with what was evaluated and how."""

    index: str  # the index's name
    generation: int  # the generation evaluated
    model: dict[str, str]  # the model that built it
    random_weights: bool  # built with random weights: the numbers mean nothing
    relevance: str  # "same" (equal label sets, the paper's protocol) or "any" (a shared label)
    rows: list[PairResult]  # one per pairing with items on both sides, in the order asked
    exact: list[PairResult] | None = None  # the same pairings ranked exactly (compare_exact)
    zero_shot: dict[str, dict[str, float | int]] = field(default_factory=dict)  # per modality
    dataset: str | None = None  # the dataset kind, when evaluate_dataset built the index
    build: BuildReport | None = field(default=None, repr=False)  # what building it did
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (record, why) not indexed

    COLUMNS: ClassVar[tuple[str, ...]] = COLUMNS  # the headline metrics, in the paper's order

    @property
    def name(self) -> str:
        """What was evaluated: the dataset kind, else the index name."""
        return self.dataset or self.index

    @property
    def has_curves(self) -> bool:
        """Whether the rows carry precision-recall curves (`curves=True`)."""
        return any(r.curve is not None for r in self.rows)

    @property
    def plot_title(self) -> str:
        return f"{self.name}: precision-recall ({self.relevance} labels)"

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: metrics as fractions, NaN as None."""
        out: dict[str, Any] = {
            "index": self.index,
            "generation": self.generation,
            "model": dict(self.model),
            "random_weights": self.random_weights,
            "relevance": self.relevance,
            "pairs": [r.as_dict() for r in self.rows],
            "zero_shot": self.zero_shot,
        }
        if self.exact is not None:
            out["exact"] = [r.as_dict() for r in self.exact]
        if self.dataset is not None:
            out["dataset"] = {
                "kind": self.dataset,
                "records": self.build.records if self.build else None,
                "indexed": self.build.indexed if self.build else None,
                "rebuilt": self.build.rebuilt if self.build else None,
                "left_out": [{"path": p, "reason": r} for p, r in self.left_out],
            }
        return out

    def write_plot(self, path: str | Path) -> Path:
        """Write the precision-recall curves as a PNG; see `write_plot`."""
        return write_plot(self, path)


def write_plot(result: EvaluationResult, path: str | Path) -> Path:
    """One precision-recall curve per pairing of `result`, in one PNG at `path` (the result
    must come from an evaluation with `curves=True`)."""
    from xsearch.eval.report import plot_curves

    if not result.has_curves:
        raise UsageError(
            "no precision-recall curves to plot: evaluate with curves=True (a pairing "
            "none of whose queries has a relevant result has none)"
        )
    target = Path(path)
    plot_curves(result.rows, target, result.plot_title)
    return target


def evaluate(
    index: Index,
    pairs: Pairs = None,
    relevance: str = "same",
    compare_exact: bool = False,
    nprobe: int | None = None,
    ef: int | None = None,
    k_factor: float | None = None,
    *,
    curves: bool = False,
) -> EvaluationResult:
    """P@1, R@1, mAP (and HR@k, R@k, MRR) of `index` for each pairing (query, result) of its
    modalities over its labelled items, and zero-shot accuracy of its audio and image items
    against the class names.

    `pairs`: "text:audio,audio:image" or [("text", "audio"), ...]; default every pairing of
    the index's modalities (those without items on both sides are left out). `relevance`:
    "same" counts a result relevant when its label set equals the query's (the paper's
    protocol), "any" when they share a label. `compare_exact` also ranks exactly, to show
    what an approximate index costs. `nprobe`, `ef`, `k_factor` tune approximate indexes as
    in search. `curves` keeps precision-recall curves for `write_plot`."""
    from xsearch.eval.retrieval import Evaluation

    _check_options(pairs, relevance, nprobe, ef, k_factor)
    modalities = _modalities(index)
    chosen = _pairs_for(pairs, modalities)
    run = Evaluation(index, relevance, nprobe=nprobe, ef=ef, k_factor=k_factor)
    rows = run.pairs(chosen, curves=curves)
    exact = None
    if compare_exact:
        exact_run = Evaluation(index, relevance, exact=True)
        exact = [exact_run.pair(r.query, r.result) for r in rows]
    store = index.store
    model = dict(store.manifest.model or {}) if store.manifest else {}
    return EvaluationResult(
        index=getattr(index, "name", store.dir.name),
        generation=store.generation,
        model=model,
        random_weights=model.get("weights") == "random",
        relevance=relevance,
        rows=rows,
        exact=exact,
        zero_shot=_zero_shot(run, modalities),
    )


def evaluate_dataset(
    kind: str,
    root: str | Path,
    index_name: str | None = None,
    weights: str | None = None,
    config: str | None = None,
    device: str = "auto",
    batch_size: int = 16,
    *,
    pairs: Pairs = None,
    relevance: str = "same",
    compare_exact: bool = False,
    nprobe: int | None = None,
    ef: int | None = None,
    k_factor: float | None = None,
    curves: bool = False,
    home: str | Path | None = None,
    gpu: bool = False,
    fp16_index: bool = False,
    options: dict[str, Any] | None = None,
    encoder: Encoder | None = None,
    workers: int | None = None,
) -> EvaluationResult:
    """Ingest the labelled dataset of `kind` (one of DATASET_KINDS) at `root` into the index
    `index_name` (default `eval-KIND`, under `home`), each file with exactly its labels, then
    `evaluate` it with the same options.

    The index is an evaluation index: brought up to date when the dataset, model and window
    are unchanged, rebuilt when they changed; a directory holding another index is refused.
    `options` go to the dataset's adapter (e.g. {"folds": [1, 2]}, {"esc10": True}).
    `weights`, `config`, `device` and `batch_size` choose the model (or pass a loaded
    `encoder`); `workers` decoding processes ingest the files (0: in this process). `gpu` and
    `fp16_index` place the FAISS indexes as in `open_index`. Records that could not be indexed
    are listed in the result's `left_out`."""
    from xsearch.api.index import check_placement, open_index
    from xsearch.eval.build import build_index, eval_index_name
    from xsearch.eval.datasets import load_dataset
    from xsearch.ingest.pipeline import IngestOptions
    from xsearch.store.store import index_dir

    # every option is checked before the slow work (the model, the ingest)
    _check_options(pairs, relevance, nprobe, ef, k_factor)
    check_placement(gpu, fp16_index)
    if kind not in ADAPTERS:
        raise ParameterError(
            "dataset", f"unknown dataset kind {kind!r} (known: {', '.join(DATASET_KINDS)})"
        )
    name = index_name or eval_index_name(kind)
    home = Path(home) if home is not None else None
    directory = index_dir(name, home)
    records = load_dataset(kind, Path(root).expanduser(), **(options or {}))
    if encoder is None:
        from xsearch.models import load_encoder

        encoder = load_encoder(weights, config=config, device=device, batch_size=batch_size)
    _pairs_for(pairs, tuple(getattr(encoder, "modalities", ())) or _all_modalities())
    ingest = IngestOptions() if workers is None else IngestOptions(workers=workers)
    built = build_index(records, directory, encoder, ingest)
    index = open_index(name, home, device=device, gpu=gpu, fp16_index=fp16_index)
    index.use_encoder(encoder)  # the one that built it, already loaded
    result = evaluate(index, pairs, relevance, compare_exact, nprobe, ef, k_factor, curves=curves)
    result.dataset = kind
    result.build = built
    result.left_out = [*built.missing, *records.skipped]
    return result


def _check_options(
    pairs: Pairs, relevance: str, nprobe: int | None, ef: int | None, k_factor: float | None
) -> None:
    """ParameterError, in one line, for an option that cannot apply to any index."""
    if relevance not in RELEVANCE:
        raise ParameterError(
            "relevance", f"unknown relevance {relevance!r}; use one of {', '.join(RELEVANCE)}"
        )
    for param, value in (("nprobe", nprobe), ("ef", ef)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ParameterError(param, f"{value!r} is not a whole number")
        if value is not None and value < 1:
            raise ParameterError(param, f"{value} is below 1")
    if k_factor is not None and not k_factor >= 1:
        raise ParameterError("k_factor", f"{k_factor} is below 1")
    _pairs_for(pairs, _all_modalities())  # the spelling, before any slow work


def _pairs_for(pairs: Pairs, modalities: Sequence[str]) -> list[tuple[str, str]]:
    from xsearch.eval.retrieval import parse_pairs

    return parse_pairs(pairs, modalities)


def _all_modalities() -> tuple[str, ...]:
    from xsearch.store.tables import MODALITIES

    return tuple(MODALITIES)


def _modalities(index: Index) -> tuple[str, ...]:
    """The modalities the index embeds (its store records them; older stores do not)."""
    recorded = getattr(index.store, "modalities", None)
    return tuple(recorded) if recorded else _all_modalities()


def _zero_shot(run: Any, modalities: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """Zero-shot accuracy of the audio and image items against the class names, where the
    index has text and single-label items of that modality."""
    out: dict[str, dict[str, float | int]] = {}
    if "text" not in modalities:
        return out
    for modality in (m for m in ("audio", "image") if m in modalities):
        try:
            out[modality] = run.zero_shot(modality)
        except UsageError:
            pass  # no single-label items of that modality
    return out
