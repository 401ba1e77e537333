"""The index an evaluation scores: a labelled collection's records ingested into an index of
their own.

`build_index` ingests the records with the ordinary ingest pipeline, giving every file exactly
its record's labels (and each of its captions as a text item), so that the vectors an
evaluation scores are the ones a query is served from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from xsearch.errors import UsageError
from xsearch.eval.datasets import PathLike, Record
from xsearch.ingest.identity import model_identity
from xsearch.ingest.pipeline import Annotation, IngestOptions, IngestReport, ingest
from xsearch.store.store import Store

EVAL_MARKER = "eval.json"  # in an index directory: built by build_index, for these records


@dataclass
class BuildReport:
    """What building an evaluation index did, and which records it could not index."""

    ingest: IngestReport
    records: int = 0
    indexed: int = 0  # records whose file is an asset of the index
    rebuilt: bool = False  # an eval index of other records, model or window was cleared first
    missing: list[tuple[str, str]] = field(default_factory=list)  # (path, why) not indexed

    @property
    def failed(self) -> list[tuple[str, str]]:
        """(path, reason) of the files that could not be decoded, as IngestReport has them."""
        return self.ingest.failed

    def as_dict(self) -> dict:
        return {
            "records": self.records,
            "indexed": self.indexed,
            "rebuilt": self.rebuilt,
            "missing": [{"path": p, "reason": r} for p, r in self.missing],
            "ingest": self.ingest.as_dict(),
        }


def eval_index_name(kind: str) -> str:
    """The conventional name of the index a collection of `kind` is evaluated on."""
    return f"eval-{kind}"


def build_index(
    records: Iterable[Record],
    index_dir: PathLike,
    encoder,
    options: IngestOptions | None = None,
    *,
    on_plan: Callable[[int], None] | None = None,
    on_file: Callable[[Path, str, int], None] | None = None,
) -> BuildReport:
    """Ingest `records` into the index at `index_dir`, each file with exactly its record's
    labels and its captions as text items (sidecars and folder names are not read).

    Ingest is incremental by file content, so an index whose files are unchanged would keep
    old labels. An evaluation therefore gets an index of its own (`eval_index_name(kind)`),
    marked by `eval.json`, which records a fingerprint of the records' paths, labels and
    captions, the model and the window length. An eval index with the same fingerprint is
    brought up to date incrementally (an interrupted build resumes; files no longer listed
    are pruned); one with another fingerprint is deleted and built afresh. A directory that
    holds anything else, such as an index built by `xsearch ingest`, is refused.

    Records whose file could not be indexed (it failed to decode, or it has the same content
    as another indexed file) are listed in `BuildReport.missing`."""
    records = list(records)
    if not records:
        raise UsageError("no records to index")
    directory = Path(index_dir)
    annotations: dict[str, Annotation] = {}
    for record in records:
        key = str(Path(record.path).resolve())
        if key in annotations:
            raise UsageError(f"{key} is listed twice")
        annotations[key] = Annotation(record.labels, record.texts)
    options = replace(
        options or IngestOptions(), annotations=annotations, prune=True, labels_from_folder=False
    )
    window = options.window_for(encoder.spec)  # the one ingest will cut with
    fingerprint = _fingerprint(annotations, model_identity(encoder), window)
    rebuilt = _prepare(directory, fingerprint, len(records))
    paths = [Path(key) for key in annotations]
    report = ingest(paths, directory, encoder, options, on_plan=on_plan, on_file=on_file)

    indexed = set(Store.open(directory).assets.column("path").to_pylist())
    failed = dict(report.failed)
    missing = [
        (key, failed.get(key, "same content as another indexed file"))
        for key in annotations
        if key not in indexed
    ]
    return BuildReport(report, len(records), len(records) - len(missing), rebuilt, missing)


def _fingerprint(annotations: dict[str, Annotation], model: dict, window: float) -> str:
    content = {
        "model": model,
        "window_seconds": window,
        "records": sorted([k, list(a.labels), list(a.texts)] for k, a in annotations.items()),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _prepare(directory: Path, fingerprint: str, count: int) -> bool:
    """Make `directory` an eval index for `fingerprint`; True when an older one was cleared."""
    marker = directory / EVAL_MARKER
    rebuilt = False
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        if not marker.is_file():
            raise UsageError(
                f"{directory} holds something other than an evaluation index; refusing to "
                "replace it (use a new index name, such as eval-<kind>)"
            )
        try:
            recorded = json.loads(marker.read_text()).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded == fingerprint:
            return False
        shutil.rmtree(directory)
        rebuilt = True
    if directory.is_dir():
        directory.rmdir()  # empty: Store.open makes an index's folders only for a new one
    Store.open(directory, create=True)
    tmp = directory / f".{EVAL_MARKER}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "records": count}) + "\n")
    os.replace(tmp, marker)
    return rebuilt
