"""Caption collections for text-audio retrieval: clips with several captions each, no labels.

Each adapter reads a collection's caption CSV into `Record`s whose `captions` are the clip's
captions (ingested as text items of the clip) and whose label set is empty; the evaluation
scores them with the caption protocol (`xsearch.eval.caption_retrieval`). `load_dataset`
(`xsearch.eval.datasets`) picks these adapters by name too.

Layouts (`kind`: where the captions and the audio are; `split` chooses the part):
- `clotho` (v2.1): `ROOT/clotho_captions_<split>.csv` and the clips in `ROOT/<split>/`.
- `audiocaps`: `ROOT/<split>.csv` and clips named by YouTube id anywhere under `ROOT`.

A listed clip without a file is a UsageError in one line naming how many there are and the
first few; `skip_missing=True` leaves them out instead, counted in `Dataset.skipped` (AudioCaps
downloads are rarely complete: YouTube videos disappear).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from xsearch.errors import UsageError
from xsearch.eval.datasets import (
    Dataset,
    PathLike,
    Record,
    _check_present,
    _csv_rows,
    _folder,
    _given,
    _inside,
    _media_by_stem,
    _nonempty,
    _number,
    _segment_stems,
)

CLOTHO_SPLITS = ("development", "validation", "evaluation")
AUDIOCAPS_SPLITS = ("train", "val", "test")
AUDIOCAPS_SECONDS = 10.0  # every AudioCaps clip is a 10 s AudioSet segment
_CAPTION_COLUMN = re.compile(r"caption_(\d+)$")
_MISSING_HINT = " (skip_missing=True leaves them out)"


def clotho(root: PathLike, *, split: str = "evaluation", skip_missing: bool = False) -> Dataset:
    """Clotho v2.1: `ROOT/clotho_captions_<split>.csv` (file_name, caption_1 ... caption_5)
    and the clips in `ROOT/<split>/` (or `ROOT/clotho_audio_<split>/`). `split`:
    development, validation or evaluation (the default: the split the papers report).

    A clip's captions are its non-empty caption_N cells in column order (Clotho has 5); a row
    with none is an error. Clips last 15-30 s, so ingest cuts each into several windows: the
    caption protocol scores a clip by its best window."""
    _check_split(split, CLOTHO_SPLITS)
    base = _folder(root)
    meta = base / f"clotho_captions_{split}.csv"
    folder = next(
        (f for f in (base / split, base / f"clotho_audio_{split}") if f.is_dir()), base / split
    )
    records: list[Record] = []
    absent: list[Path] = []
    seen: dict[str, int] = {}
    columns: list[str] | None = None
    for line, row in _csv_rows(meta, ["file_name", "caption_1"], optional_values=("caption_1",)):
        if columns is None:  # caption_1, caption_2, ... in their number's order
            numbered = [(int(m[1]), k) for k in row if k and (m := _CAPTION_COLUMN.match(k))]
            columns = [name for _, name in sorted(numbered)]
        name = row["file_name"].strip()
        if name in seen:
            first = seen[name]
            raise UsageError(f"{meta}:{line}: {name!r} is listed again (first on line {first})")
        seen[name] = line
        captions = tuple(c for c in ((row.get(k) or "").strip() for k in columns) if c)
        if not captions:
            raise UsageError(f"{meta}:{line}: no caption for {name!r}")
        path = _inside(folder, name, meta, line)
        if path.is_file():
            records.append(Record(path, (), captions=captions))
        else:
            absent.append(path)
    return _present("clotho", base, meta, records, absent, skip_missing)


def audiocaps(
    root: PathLike,
    *,
    split: str = "test",
    media: PathLike | None = None,
    skip_missing: bool = False,
) -> Dataset:
    """AudioCaps: `ROOT/<split>.csv` (or `ROOT/dataset/<split>.csv`, the official repository's
    layout) with `audiocap_id, youtube_id, start_time, caption`. `split`: train, val or test
    (the default: the split the papers report). The rows of one youtube_id are one clip, with
    each row's caption in file order (5 a clip in val and test, 1 in train).

    A clip's file is the first audio or video file under `media` (default `ROOT`, searched
    recursively) whose name without extension is one of `<youtube_id>`,
    `<youtube_id>_<start>` or `<youtube_id>_<start>_<end>` (start as the CSV writes it, as
    whole seconds, or in milliseconds; end = start + 10 s), each also with a `Y` prefix, as
    the common downloaders name them: `dQw4w9WgXcQ.wav`, `YdQw4w9WgXcQ.wav`,
    `dQw4w9WgXcQ_30.flac`, `dQw4w9WgXcQ_30000.wav`, `dQw4w9WgXcQ_30_40.mp4`. An audio file is
    preferred to a video of the same name. The whole file is evaluated (downloads are cut to
    the 10 s segment already); `Record.start/end` keep the segment's times."""
    _check_split(split, AUDIOCAPS_SPLITS)
    base = _folder(root)
    meta = next(
        (p for p in (base / f"{split}.csv", base / "dataset" / f"{split}.csv") if p.is_file()),
        base / f"{split}.csv",
    )
    folder = _given(base, media, "media") if media is not None else base
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder (the AudioCaps audio)")
    clips: dict[str, tuple[int, list[str], list[str]]] = {}  # id -> (line, starts, captions)
    for line, row in _csv_rows(meta, ["youtube_id", "start_time", "caption"]):
        ytid = row["youtube_id"].strip()
        written = row["start_time"].strip()
        _number(written, meta, line, "start_time")
        _, starts, captions = clips.setdefault(ytid, (line, [], []))
        if written not in starts:
            starts.append(written)
        captions.append(row["caption"].strip())
    local = _media_by_stem(folder, prefer="audio") if clips else {}
    records: list[Record] = []
    absent: list[Path] = []
    for ytid, (_, starts, captions) in clips.items():
        path = next((local[s] for s in _audiocaps_stems(ytid, starts) if s in local), None)
        begins = float(starts[0])
        if path is None:
            absent.append(folder / ytid)
            continue
        records.append(
            Record(path, (), captions=tuple(captions), start=begins, end=begins + AUDIOCAPS_SECONDS)
        )
    return _present("audiocaps", base, meta, records, absent, skip_missing, ids=True)


CAPTION_ADAPTERS: dict[str, Callable[..., Dataset]] = {
    "clotho": clotho,
    "audiocaps": audiocaps,
}


def _check_split(split: str, known: tuple[str, ...]) -> None:
    if split not in known:
        raise UsageError(f"unknown split {split!r} (use one of {', '.join(known)})")


def _audiocaps_stems(ytid: str, starts: list[str]) -> list[str]:
    stems: list[str] = []
    for start in starts:
        end = f"{float(start) + AUDIOCAPS_SECONDS:g}"
        stems += _segment_stems(ytid, start, end)
    return list(dict.fromkeys(stems))


def _present(
    kind: str,
    base: Path,
    meta: Path,
    records: list[Record],
    absent: list[Path],
    skip_missing: bool,
    ids: bool = False,
) -> Dataset:
    """The dataset, or the one-line error about the absent clips (unless `skip_missing`)."""
    if absent and not skip_missing:
        if ids:  # no path to name: the clips are found by YouTube id
            shown = ", ".join(p.name for p in absent[:3]) + (", ..." if len(absent) > 3 else "")
            many = f"{len(absent)} clips" if len(absent) > 1 else "a clip"
            raise UsageError(
                f"{meta}: {many} it lists have no file under {absent[0].parent}, "
                f"e.g. {shown}{_MISSING_HINT}"
            )
        _check_present(absent, meta, _MISSING_HINT)
    skipped = [(p.name if ids else str(p), "no local file") for p in absent]
    if not records and skipped:
        raise UsageError(f"{meta}: none of its {len(skipped)} clips has a file")
    return Dataset(kind, base, _nonempty(records, meta), skipped)
