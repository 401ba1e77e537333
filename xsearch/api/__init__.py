"""The public Python API: everything the `xsearch` command does, as functions and typed results.

    import xsearch
    xsearch.tune_threads()  # optional, before numpy loads: see its docstring
    index = xsearch.open("media", create=True)
    report = index.ingest(["~/media"])
    hits = index.search(text="rain on a roof", target="audio")

The command line, the server and the demo are shells over these names; each lives in a
module of this package and loads its heavy dependencies only when called.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module of this package that defines it
_EXPORTS = {
    "Index": "index",
    "Hit": "index",
    "open_index": "index",
    "list_indexes": "index",
    "IndexStatus": "index",
    "IngestReport": "index",
    "IngestOptions": "index",
    "embed": "models",
    "model_info": "models",
    "ModelInfo": "models",
    "fetch_weights": "models",
    "convert_weights": "models",
    "prepare_weights": "models",
    "FetchResult": "models",
    "list_configs": "models",
    "list_models": "models",
    "ModelCard": "models",
    "weights_info": "models",
    "WeightsInfo": "models",
    "evaluate": "evaluation",
    "evaluate_dataset": "evaluation",
    "EvaluationResult": "evaluation",
    "PairResult": "evaluation",
    "DATASET_KINDS": "evaluation",
    "write_plot": "evaluation",
    "check_placement": "index",
    "ALL_TARGETS": "facts",
    "TARGET_LABELS": "facts",
    "RANDOM_WEIGHTS_WARNING": "facts",
    "install_hint": "facts",
    "targets_for": "facts",
    "serve": "serving",
    "serve_resident": "serving",
    "is_loopback": "serving",
    "serve_locally": "resident_server",
    "search_resident": "resident",
    "ResidentAnswer": "resident",
    "Hits": "resident",
    "search_indexes": "multi",
    "MergedHits": "multi",
    "read_path_list": "reports",
    "ingest_notes": "reports",
    "run_demo": "demo",
    "DemoReport": "demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xsearch.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"xsearch.api.{module}"), name)
    globals()[name] = value
    return value
