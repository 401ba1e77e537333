"""Evaluation: retrieval metrics, every pairing of an index's modalities, caption retrieval
(text <-> audio, as Clotho and AudioCaps are reported), and labelled or captioned collections
(dataset adapters) ingested into an index built for the evaluation, so that the evaluated
vectors are the ones a query is served from.

`xsearch.eval.datasets` and `xsearch.eval.caption_datasets` (the adapters),
`xsearch.eval.caption_retrieval` and `xsearch.eval.build` (the evaluation index, which loads
the ingest pipeline) are imported where needed; `xsearch.api.evaluate` runs it all."""

from xsearch.eval.metrics import (
    average_precisions,
    caption_metrics,
    interpolated_precision,
    retrieval_metrics,
    zero_shot_accuracy,
)
from xsearch.eval.retrieval import Evaluation, PairResult, parse_pairs

__all__ = [
    "Evaluation",
    "PairResult",
    "average_precisions",
    "caption_metrics",
    "interpolated_precision",
    "parse_pairs",
    "retrieval_metrics",
    "zero_shot_accuracy",
]
