"""Retrieval quality of an index, or of a labelled or captioned dataset ingested for it.

    result = xsearch.api.evaluate(xsearch.open("media"), pairs="text:audio")
    result = xsearch.api.evaluate_dataset("esc50", "ESC-50-master", curves=True)
    result = xsearch.api.evaluate_dataset("clotho", "clotho", model="laion-clap")
    result.rows[0].metrics["mAP"], result.as_dict(), result.write_plot("pr.png")

The metrics are those of the vectors the index serves. Two protocols: "labels" (see
`xsearch.eval.retrieval`: text queries are the index's label sets, image and audio queries its
labelled items) and "captions" (see `xsearch.eval.caption_retrieval`: text -> audio and
audio -> text between captions and the clips they describe, as Clotho and AudioCaps are
evaluated). Caption datasets use the second, every other the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from xsearch.errors import ParameterError, UsageError
from xsearch.eval.caption_datasets import CAPTION_ADAPTERS
from xsearch.eval.datasets import ADAPTERS
from xsearch.eval.report import CAPTION_COLUMNS, COLUMNS
from xsearch.eval.retrieval import RELEVANCE, PairResult, check_aggregate

if TYPE_CHECKING:
    from xsearch.api.index import Index
    from xsearch.eval.build import BuildReport
    from xsearch.models.spec import Encoder

__all__ = ["DATASET_KINDS", "EvaluationResult", "evaluate", "evaluate_dataset", "write_plot"]

DATASET_KINDS: tuple[str, ...] = (*ADAPTERS, *CAPTION_ADAPTERS)  # what evaluate_dataset reads
PROTOCOLS = ("labels", "captions")

Pairs = str | Iterable[tuple[str, str] | str] | None


@dataclass
class EvaluationResult:
    """One evaluation: a row of metrics per pairing (fractions in [0, 1]; NaN where no query
    had a relevant result), with what was evaluated and how."""

    index: str  # the index's name
    generation: int  # the generation evaluated
    model: dict[str, str]  # the model that built it
    random_weights: bool  # built with random weights: the numbers mean nothing
    # labels protocol: "same" (equal label sets, the paper's) or "any" (a shared label);
    # captions protocol: "own" (a caption's own clip, a clip's own captions)
    relevance: str
    rows: list[PairResult]  # one per pairing with items on both sides, in the order asked
    exact: list[PairResult] | None = None  # the same pairings ranked exactly (compare_exact)
    zero_shot: dict[str, dict[str, float | int]] = field(default_factory=dict)  # per modality
    dataset: str | None = None  # the dataset kind, when evaluate_dataset built the index
    build: BuildReport | None = field(default=None, repr=False)  # what building it did
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (record, why) not indexed
    protocol: str = "labels"  # or "captions" (text <-> audio between captions and their clips)
    # files scored by their items together (central, mean or max; None: every item alone);
    # then `rows` are scored so, and `central` holds the same pairings by the central item
    aggregate: str | None = None
    central: list[PairResult] | None = None  # with aggregate mean or max
    central_exact: list[PairResult] | None = None  # central ranked exactly (compare_exact)

    COLUMNS: ClassVar[tuple[str, ...]] = COLUMNS  # the labels protocol's headline metrics

    @property
    def columns(self) -> tuple[str, ...]:
        """The headline metrics of this result's protocol, in its papers' order."""
        return CAPTION_COLUMNS if self.protocol == "captions" else COLUMNS

    @property
    def map_metric(self) -> str:
        """The name of this protocol's mean average precision (the exact comparison's)."""
        return "mAP@10" if self.protocol == "captions" else "mAP"

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
        if self.protocol == "captions":
            return f"{self.name}: precision-recall (caption retrieval)"
        return f"{self.name}: precision-recall ({self.relevance} labels)"

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: metrics as fractions, NaN as None."""
        out: dict[str, Any] = {
            "index": self.index,
            "generation": self.generation,
            "model": dict(self.model),
            "random_weights": self.random_weights,
            "protocol": self.protocol,
            "relevance": self.relevance,
            "pairs": [r.as_dict() for r in self.rows],
            "zero_shot": self.zero_shot,
        }
        if self.exact is not None:
            out["exact"] = [r.as_dict() for r in self.exact]
        if self.aggregate is not None:
            out["aggregate"] = self.aggregate
        if self.central is not None:
            out["central"] = [r.as_dict() for r in self.central]
        if self.central_exact is not None:
            out["central_exact"] = [r.as_dict() for r in self.central_exact]
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
    plot_curves([*result.rows, *(result.central or ())], target, result.plot_title)
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
    protocol: str = "labels",
    prompt: str | None = None,
    aggregate: str | None = None,
) -> EvaluationResult:
    """P@1, R@1, mAP (and HR@k, R@k, MRR) of `index` for each pairing (query, result) of its
    modalities over its labelled items, and zero-shot accuracy of its audio and image items
    against the class names (`prompt`: a template whose `{}` the class name replaces, e.g.
    "This is a sound of {}."; default the bare name, as the AudioCLIP paper).

    `protocol="captions"`: caption retrieval instead (the index's text items are captions of
    their file): R@1, R@5, R@10 and mAP@10 of text -> audio and audio -> text, as Clotho and
    AudioCaps are reported (see `xsearch.eval.caption_retrieval`); no zero-shot accuracy.

    `pairs`: "text:audio,audio:image" or [("text", "audio"), ...]; default every pairing of
    the index's modalities (those without items on both sides are left out). `relevance`:
    "same" counts a result relevant when its label set equals the query's (the paper's
    protocol), "any" when they share a label. `compare_exact` also ranks exactly, to show
    what an approximate index costs. `nprobe`, `ef`, `k_factor` tune approximate indexes as
    in search. `curves` keeps precision-recall curves for `write_plot`.

    `aggregate` ("central", "mean" or "max") scores files rather than items: a video's frames
    or a recording's audio windows together, as query and as candidate (see
    `xsearch.eval.retrieval`); `rows` are then scored that way and, for "mean" and "max",
    `central` holds the same pairings by each file's central item, the paper's protocol."""
    from xsearch.eval.caption_retrieval import CaptionEvaluation
    from xsearch.eval.retrieval import Evaluation

    _check_options(pairs, relevance, nprobe, ef, k_factor, protocol, prompt, aggregate)
    modalities = _modalities(index)
    run: Any
    exact_run: Any = None
    central_run: Any = None
    knobs: dict[str, Any] = {"nprobe": nprobe, "ef": ef, "k_factor": k_factor}
    if protocol == "captions":
        chosen = _caption_pairs_for(pairs, modalities)
        run = CaptionEvaluation(index, **knobs)
        if compare_exact:
            exact_run = CaptionEvaluation(index, exact=True)
        relevance = "own"
    else:
        chosen = _pairs_for(pairs, modalities)
        run = Evaluation(index, relevance, aggregate=aggregate, **knobs)
        if compare_exact:
            exact_run = Evaluation(index, relevance, exact=True, aggregate=aggregate)
        if aggregate not in (None, "central"):
            central_run = Evaluation(index, relevance, aggregate="central", **knobs)
    rows = run.pairs(chosen, curves=curves)
    exact = [exact_run.pair(r.query, r.result) for r in rows] if exact_run else None
    central: list[PairResult] | None = None
    central_exact: list[PairResult] | None = None
    if central_run is not None:
        central = [central_run.pair(r.query, r.result, curves) for r in rows]
        if compare_exact:
            central_exact_run = Evaluation(index, relevance, exact=True, aggregate="central")
            central_exact = [central_exact_run.pair(r.query, r.result) for r in rows]
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
        zero_shot={} if protocol == "captions" else _zero_shot(run, modalities, prompt),
        protocol=protocol,
        aggregate=aggregate,
        central=central,
        central_exact=central_exact,
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
    model: str | None = None,
    prompt: str | None = None,
    aggregate: str | None = None,
) -> EvaluationResult:
    """Ingest the labelled dataset of `kind` (one of DATASET_KINDS) at `root` into the index
    `index_name` (default `eval-KIND`, under `home`), each file with exactly its labels (a
    caption dataset's clips with their captions as text items), then `evaluate` it with the
    same options: caption datasets (clotho, audiocaps) with the captions protocol.

    The index is an evaluation index: brought up to date when the dataset, model and window
    are unchanged, rebuilt when they changed; a directory holding another index is refused.
    `options` go to the dataset's adapter (e.g. {"folds": [1, 2]}, {"esc10": True},
    {"split": "validation"}, {"skip_missing": True}).
    `model` (a model name such as "laion-clap": the name of its config, so the same as
    `config`), `weights`, `device` and `batch_size` choose the model (or pass a loaded
    `encoder`); the pairings come from its modalities. `workers` decoding processes ingest the
    files (0: in this process). `gpu` and `fp16_index` place the FAISS indexes as in
    `open_index`. Records that could not be indexed are listed in the result's `left_out`."""
    from xsearch.api.index import check_placement, open_index
    from xsearch.eval.build import build_index, eval_index_name
    from xsearch.eval.datasets import load_dataset
    from xsearch.ingest.pipeline import IngestOptions
    from xsearch.store.store import index_dir

    # every option is checked before the slow work (the model, the ingest)
    protocol = "captions" if kind in CAPTION_ADAPTERS else "labels"
    _check_options(pairs, relevance, nprobe, ef, k_factor, protocol, prompt, aggregate)
    check_placement(gpu, fp16_index)
    config = _model_config(model, config)
    if kind not in DATASET_KINDS:
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
    modalities = tuple(getattr(encoder, "modalities", ())) or _all_modalities()
    if protocol == "captions":
        _caption_pairs_for(pairs, modalities)
    else:
        _pairs_for(pairs, modalities)
    ingest = IngestOptions() if workers is None else IngestOptions(workers=workers)
    built = build_index(records, directory, encoder, ingest)
    index = open_index(
        name, home, weights=weights, config=config, device=device, gpu=gpu, fp16_index=fp16_index
    )
    index.use_encoder(encoder)  # the one that built it, already loaded
    result = evaluate(
        index, pairs, relevance, compare_exact, nprobe, ef, k_factor,
        curves=curves, protocol=protocol, prompt=prompt, aggregate=aggregate,
    )  # fmt: skip
    result.dataset = kind
    result.build = built
    result.left_out = [*built.missing, *records.skipped]
    return result


def _check_options(
    pairs: Pairs,
    relevance: str,
    nprobe: int | None,
    ef: int | None,
    k_factor: float | None,
    protocol: str = "labels",
    prompt: str | None = None,
    aggregate: str | None = None,
) -> None:
    """ParameterError, in one line, for an option that cannot apply to any index."""

    if protocol not in PROTOCOLS:
        raise ParameterError(
            "protocol", f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}"
        )
    check_aggregate(aggregate)
    if aggregate is not None and protocol == "captions":
        raise ParameterError(
            "aggregate", "caption retrieval already scores a clip by its best window"
        )
    if prompt is not None and (not isinstance(prompt, str) or prompt.count("{}") != 1):
        raise ParameterError("prompt", f"{prompt!r} must hold {{}} once, where the class name goes")
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
    if protocol == "captions":
        _caption_pairs_for(pairs, _all_modalities())  # the spelling, before any slow work
    else:
        _pairs_for(pairs, _all_modalities())


def _model_config(model: str | None, config: str | None) -> str | None:
    """A model is chosen by its name, which is its config's name: either may be given."""
    if model is not None and config is not None and model != config:
        raise ParameterError(
            "model", f"model {model!r} and config {config!r} differ (a model name is its config)"
        )
    return model if model is not None else config


def _caption_pairs_for(pairs: Pairs, modalities: Sequence[str]) -> list[tuple[str, str]]:
    """The caption pairings asked for (default text:audio and audio:text), for a model or
    index of `modalities`, which must hold text and audio."""
    from xsearch.eval.caption_retrieval import caption_pairs

    lacking = [m for m in ("text", "audio") if m not in modalities]
    if lacking:
        raise ParameterError(
            "pairs",
            f"caption retrieval needs text and audio; there is no {lacking[0]} "
            f"(only {', '.join(modalities)})",
        )
    return caption_pairs(_pairs_for(pairs, modalities) if pairs else None)


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


def _zero_shot(
    run: Any, modalities: Sequence[str], prompt: str | None = None
) -> dict[str, dict[str, float | int]]:
    """Zero-shot accuracy of the audio and image items against the class names, where the
    index has text and single-label items of that modality."""
    out: dict[str, dict[str, float | int]] = {}
    if "text" not in modalities:
        return out
    for modality in (m for m in ("audio", "image") if m in modalities):
        try:
            out[modality] = run.zero_shot(modality, prompt=prompt)
        except UsageError:
            pass  # no single-label items of that modality
    return out
