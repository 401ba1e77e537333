"""Labelled collections for evaluation: each adapter reads a collection's own metadata.

An adapter reads a collection's metadata into `Record`s (a media file, its label set, an
optional caption and fold); `load_dataset(kind, root, **options)` picks the adapter by name.
`xsearch.eval.build` ingests the records into the index an evaluation scores.

Layouts (`kind`: where the metadata and the media are):
- `esc50`: `ROOT/meta/esc50.csv`, audio in `ROOT/audio/`.
- `urbansound8k`: `ROOT/metadata/UrbanSound8K.csv`, audio in `ROOT/audio/fold<k>/`.
- `audioset`: a segments CSV (`YTID, start_seconds, end_seconds, positive_labels`) and
  optionally `class_labels_indices.csv`, with whatever media was downloaded.
- `folders`: `ROOT/<class>/<files>`.
- `manifest`: a CSV or JSONL file of `path, labels[, caption][, fold]`.
- `av-pairs`: the CAV-MAE retrieval lists (AudioSet, VGGSound): a JSON file of clips, each a
  sound file and a folder of extracted frames; a clip's sound and frame are each other's match.

Caption collections (`clotho`, `audiocaps`: clips with several captions each, no labels) are
read by `xsearch.eval.caption_datasets`; `load_dataset` reads them too.

Every problem with the metadata (a missing file or column, a malformed row, a listed file
that is absent) is a UsageError with one line naming the file and line. The one exception
is AudioSet, whose downloads are always incomplete: segments without a local file are
skipped and counted in `Dataset.skipped`.
"""

from __future__ import annotations

import csv
import inspect
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from xsearch.errors import UsageError
from xsearch.ingest.scan import find_files
from xsearch.media import kind_of

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Record:
    """One labelled media file of a collection."""

    path: Path  # absolute and resolved
    labels: tuple[str, ...]  # the label set: relevance is judged on it
    caption: str | None = None  # ingested as a text item of the file
    fold: int | None = None  # the collection's cross-validation fold, when it has folds
    start: float | None = None  # AudioSet: the segment in the source video, seconds
    end: float | None = None
    captions: tuple[str, ...] = ()  # a caption dataset's captions of the clip, in its order

    @property
    def texts(self) -> tuple[str, ...]:
        """The caption and the captions: what is ingested as text items of the file."""
        return ((self.caption,) if self.caption else ()) + self.captions


@dataclass
class Dataset:
    """The records of one collection, and what its metadata listed but could not be used."""

    kind: str
    root: Path
    records: list[Record]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __getitem__(self, index: int) -> Record:
        return self.records[index]

    @property
    def classes(self) -> list[str]:
        """Every label that occurs, sorted: the class names (zero-shot prompts)."""
        return sorted({label for record in self.records for label in record.labels})

    @property
    def folds(self) -> list[int]:
        return sorted({r.fold for r in self.records if r.fold is not None})

    def select(self, folds: int | Iterable[int]) -> Dataset:
        """The records of the given fold(s)."""
        wanted = {folds} if isinstance(folds, int) else set(folds)
        if not self.folds:
            raise UsageError(f"the {self.kind} collection at {self.root} has no folds")
        unknown = sorted(wanted - set(self.folds))
        if unknown:
            have = ", ".join(map(str, self.folds))
            raise UsageError(
                f"no fold {', '.join(map(str, unknown))} in {self.root} (it has folds {have})"
            )
        return replace(self, records=[r for r in self.records if r.fold in wanted])


# ---------------------------------------------------------------------------- adapters


def esc50(root: PathLike, *, esc10: bool = False) -> Dataset:
    """ESC-50: `ROOT/meta/esc50.csv` (filename, fold, target, category, esc10, src_file, take)
    and the clips in `ROOT/audio/`. A clip's label is its category with '_' read as a space
    ("dog", "chirping birds"): the AudioCLIP paper used the class names as the text prompts.
    `esc10` keeps the ESC-10 subset.

    The paper centre-pads/crops every clip to 5 s; ESC-50 clips are 5 s already and ingest cuts
    audio into 10 s windows, so each clip is one audio item, as in the paper."""
    base = _folder(root)
    meta = base / "meta" / "esc50.csv"
    records, absent = [], []
    columns = ["filename", "fold", "category"] + (["esc10"] if esc10 else [])
    for line, row in _csv_rows(meta, columns):
        if esc10 and row["esc10"].strip().lower() != "true":
            continue
        path = _inside(base / "audio", row["filename"], meta, line)
        fold = _fold(row["fold"], meta, line, 5)
        records.append(Record(path, (_label(row["category"]),), fold=fold))
        if not path.is_file():
            absent.append(path)
    _check_present(absent, meta)
    return Dataset("esc50", base, _nonempty(records, meta))


def urbansound8k(root: PathLike) -> Dataset:
    """UrbanSound8K: `ROOT/metadata/UrbanSound8K.csv` (slice_file_name, fsID, start, end,
    salience, fold, classID, class) and the slices in `ROOT/audio/fold<k>/`. A slice's label
    is its class with '_' read as a space ("dog bark", "street music"). The CSV's start/end
    are offsets in the original Freesound recording, not in the slice, so they are not kept.
    Slices last up to 4 s: each is one audio item."""
    base = _folder(root)
    meta = base / "metadata" / "UrbanSound8K.csv"
    records, absent = [], []
    for line, row in _csv_rows(meta, ["slice_file_name", "fold", "class"]):
        fold = _fold(row["fold"], meta, line, 10)
        path = _inside(base / "audio" / f"fold{fold}", row["slice_file_name"], meta, line)
        records.append(Record(path, (_label(row["class"]),), fold=fold))
        if not path.is_file():
            absent.append(path)
    _check_present(absent, meta)
    return Dataset("urbansound8k", base, _nonempty(records, meta))


SEGMENT_FILES = (
    "eval_segments.csv",
    "balanced_train_segments.csv",
    "unbalanced_train_segments.csv",
)
CLASS_LABELS = "class_labels_indices.csv"


def audioset(
    root: PathLike,
    *,
    segments: PathLike | None = None,
    class_labels: PathLike | None = None,
    media: PathLike | None = None,
) -> Dataset:
    """AudioSet-style segments: a CSV in the official format (`# ` comment lines, then
    `YTID, start_seconds, end_seconds, "mid,mid,..."`), by default the first of
    `ROOT/{eval,balanced_train,unbalanced_train}_segments.csv` that exists.

    Labels are mapped from MIDs to names with `class_labels` (`index,mid,display_name`, like
    `class_labels_indices.csv`, the default when `ROOT` has it; or the `ontology.json` list of
    `{id, name}`); without one the MIDs are the labels.

    A segment's media is the first audio or video file under `media` (default `ROOT`, searched
    recursively) whose name without extension is `YTID`, `YTID_START` or `YTID_START_END`
    (START and END as the CSV writes them, as whole seconds, or START in milliseconds), each
    also with a `Y` prefix; a video is preferred to an audio file of the same name. Segments
    without a local file are skipped and counted in `Dataset.skipped`.

    The whole local file is evaluated: downloads are normally already cut to the 10 s
    segment (a longer file is embedded window by window, every window with the segment's
    labels). `Record.start/end` keep the segment's times as the CSV gives them."""
    base = _folder(root)
    table = _given(base, segments, "segments") if segments else _default_segments(base)
    names = None
    if class_labels is not None:
        names = _class_names(_given(base, class_labels, "class_labels"))
    elif (base / CLASS_LABELS).is_file():
        names = _class_names(base / CLASS_LABELS)
    folder = _given(base, media, "media") if media is not None else base
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder (the AudioSet media)")
    local = _media_by_stem(folder)
    records: list[Record] = []
    skipped: list[tuple[str, str]] = []
    used: dict[Path, str] = {}
    for line, (ytid, start_text, end_text, mids) in _segment_rows(table):
        start = _number(start_text, table, line, "start_seconds")
        end = _number(end_text, table, line, "end_seconds")
        labels = []
        for mid in (m.strip() for m in mids.split(",")):
            if not mid:
                continue
            if names is not None and mid not in names:
                raise UsageError(f"{table}:{line}: label {mid!r} is not in the class labels")
            labels.append(names[mid] if names is not None else mid)
        if not labels:
            raise UsageError(f"{table}:{line}: no positive_labels")
        path = next(
            (local[s] for s in _segment_stems(ytid, start_text, end_text) if s in local), None
        )
        if path is None:
            skipped.append((ytid, "no local file"))
        elif path in used:
            skipped.append((ytid, f"same local file as segment {used[path]}"))
        else:
            used[path] = ytid
            labels = list(dict.fromkeys(labels))
            records.append(Record(path, tuple(labels), start=start, end=end))
    if not records:
        found = f"none of its {len(skipped)} segments has" if skipped else "it lists no segments"
        raise UsageError(f"{table}: {found} a local file under {folder}")
    return Dataset("audioset", base, records, skipped)


def folders(root: PathLike) -> Dataset:
    """Folder per class: `ROOT/<class>/...`: every audio, image or video file anywhere under a
    class folder is labelled with that folder's name. Files directly in `ROOT` have no class:
    they are skipped (in `Dataset.skipped`)."""
    base = _folder(root)
    records: list[Record] = []
    skipped: list[tuple[str, str]] = []
    for path in find_files([base]):
        parts = path.relative_to(base).parts
        if len(parts) < 2:
            skipped.append((str(path), "not in a class folder"))
        else:
            records.append(Record(path, (parts[0],)))
    if not records:
        raise UsageError(f"{base}: no media files in class folders (expected ROOT/<class>/...)")
    return Dataset("folders", base, records, skipped)


MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl")
_LABEL_SEPARATORS = re.compile(r"[;|]")


def manifest(root: PathLike, *, allow_outside: bool = False) -> Dataset:
    """A manifest: `ROOT` is a `.csv` or `.jsonl` file, or a folder holding `manifest.csv` or
    `manifest.jsonl`.

    CSV: a header with `path` and `labels`, optionally `caption` and `fold` (other columns are
    ignored); labels are separated by ';' or '|'. JSONL: one object a line, with `path`,
    `labels` (a list of strings, or one string separated by ';' or '|'), optionally `caption`
    and `fold`. Relative paths are resolved against the manifest's folder; a path that
    resolves outside that folder (`..`, an absolute path, a symlink) is refused unless
    `allow_outside`, so a manifest cannot make the evaluation read files the user did not
    point at."""
    file = _manifest_file(Path(root))
    base = file.parent.resolve()
    rows = _jsonl_rows(file) if file.suffix.lower() == ".jsonl" else _manifest_csv_rows(file)
    records: list[Record] = []
    absent: list[Path] = []
    seen: dict[Path, int] = {}
    for line, value, labels, caption, fold in rows:
        path = _inside(
            base, value, file, line, allow_outside=allow_outside, hint=" (allow_outside allows it)"
        )
        if not labels:
            raise UsageError(f"{file}:{line}: no labels for {value!r}")
        if path in seen:
            raise UsageError(
                f"{file}:{line}: {value!r} is listed again (first on line {seen[path]})"
            )
        seen[path] = line
        if not path.is_file():
            absent.append(path)
        elif kind_of(path) not in ("audio", "image", "video"):
            raise UsageError(f"{file}:{line}: {value!r} is not an audio, image or video file")
        records.append(Record(path, tuple(dict.fromkeys(labels)), caption or None, fold))
    _check_present(absent, file)
    return Dataset("manifest", base, _nonempty(records, file))


def av_pairs(root: PathLike, *, frame: int = 5, allow_outside: bool = False) -> Dataset:
    """Audio-visual pairs in the format of CAV-MAE's data lists: `ROOT` is a JSON file
    `{"data": [{"video_id", "wav", "video_path", ...}, ...]}` (its AudioSet and VGGSound
    evaluation lists), or a folder holding one `*.json`. Each clip gives two records labelled
    with its video id alone, so that each is the other's only relevant match: its sound
    (`wav`) and its frame `video_path/frame_<frame>/<video_id>.jpg` (frame 5 of the ten the
    official extraction writes, the one its retrieval script uses). Evaluate `audio:image`
    and `image:audio`: HR@1, HR@5 and HR@10 are the paper's R@1, R@5 and R@10.

    Relative paths are resolved against the file's folder; one outside it is refused unless
    `allow_outside` (the official lists hold absolute paths). Clips whose sound or frame is
    missing are skipped and counted in `Dataset.skipped`, as downloads are incomplete."""
    file = Path(root)
    if file.is_dir():
        found = sorted(file.glob("*.json"))
        if len(found) != 1:
            raise UsageError(f"{file}: expected one data list (*.json) there, found {len(found)}")
        file = found[0]
    base = file.parent.resolve()
    with _open_text(file, "the data list") as f:
        try:
            entries = json.load(f).get("data")
        except (json.JSONDecodeError, AttributeError):
            entries = None
    if not isinstance(entries, list):
        raise UsageError(f'{file}: not a data list (expected {{"data": [...]}})')
    records: list[Record] = []
    skipped: list[tuple[str, str]] = []
    hint = " (allow_outside allows it)"
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) for k in ("video_id", "wav", "video_path")
        ):
            raise UsageError(f"{file}: entry {number} lacks video_id, wav or video_path")
        clip = entry["video_id"]
        sound = _inside(base, entry["wav"], file, number, allow_outside=allow_outside, hint=hint)
        folder = entry["video_path"].rstrip("/")
        picture_path = f"{folder}/frame_{frame}/{clip}.jpg"
        picture = _inside(base, picture_path, file, number, allow_outside=allow_outside, hint=hint)
        missing = [p.name for p in (sound, picture) if not p.is_file()]
        if missing:
            skipped.append((clip, f"no {' or '.join(missing)}"))
            continue
        records.append(Record(sound, (clip,)))
        records.append(Record(picture, (clip,)))
    if not records:
        found = f"none of its {len(skipped)} clips has" if skipped else "it lists no clips"
        raise UsageError(f"{file}: {found} both a sound and a frame")
    return Dataset("av-pairs", base, records, skipped)


ADAPTERS: dict[str, Callable[..., Dataset]] = {
    "esc50": esc50,
    "urbansound8k": urbansound8k,
    "audioset": audioset,
    "folders": folders,
    "manifest": manifest,
    "av-pairs": av_pairs,
}


def load_dataset(
    kind: str, root: PathLike, *, folds: int | Iterable[int] | None = None, **options
) -> Dataset:
    """The collection at `root` read by the adapter `kind` (see ADAPTERS, and CAPTION_ADAPTERS
    of `xsearch.eval.caption_datasets`) with its `options`; `folds` keeps the records of those
    folds."""
    from xsearch.eval.caption_datasets import CAPTION_ADAPTERS  # builds on this module

    adapter = ADAPTERS.get(kind) or CAPTION_ADAPTERS.get(kind)
    if adapter is None:
        known = ", ".join([*ADAPTERS, *CAPTION_ADAPTERS])
        raise UsageError(f"unknown dataset kind {kind!r} (known: {known})")
    try:
        inspect.signature(adapter).bind(root, **options)
    except TypeError:
        allowed = [p for p in inspect.signature(adapter).parameters if p != "root"]
        raise UsageError(
            f"{kind}: unknown option(s) {', '.join(sorted(options))} "
            f"(it takes {', '.join(allowed) or 'none'})"
        ) from None
    dataset = adapter(root, **options)
    return dataset.select(folds) if folds is not None else dataset


# ---------------------------------------------------------------------------- helpers


def _folder(root: PathLike) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise UsageError(f"{path}: no such folder")
    return path.resolve()


def _given(base: Path, value: PathLike, option: str) -> Path:
    """A path option, relative to the collection's root."""
    path = (base / value).resolve()
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder (the {option} option)")
    return path


def _open_text(path: Path, what: str):
    if not path.is_file():
        raise UsageError(f"{path}: no such file ({what})")
    try:
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _csv_rows(
    path: Path, required: list[str], optional_values: tuple[str, ...] = ()
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV with a header. The `required` columns must be in the
    header, and have a value in every row unless named in `optional_values`."""
    with _open_text(path, "the collection's metadata") as file:
        try:
            reader = csv.DictReader(file)
            header = [name.strip() for name in reader.fieldnames or []]
            reader.fieldnames = header
            lacking = [name for name in required if name not in header]
            if lacking:
                raise UsageError(
                    f"{path}: no column {', '.join(map(repr, lacking))} in the header "
                    f"(needs {', '.join(required)})"
                )
            for row in reader:
                line = reader.line_num
                for name in required:
                    if name not in optional_values:
                        _field(row, name, path, line)
                yield line, row
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: not a readable CSV file: {exc}") from None


def _field(row: dict, name: str, path: Path, line: int) -> str:
    value = (row.get(name) or "").strip()
    if not value:
        raise UsageError(f"{path}:{line}: empty {name!r}")
    return value


def _fold(value: str, path: Path, line: int, most: int | None = None) -> int:
    try:
        fold = int(value.strip())
    except ValueError:
        raise UsageError(f"{path}:{line}: fold {value!r} is not a whole number") from None
    if fold < 1:
        raise UsageError(f"{path}:{line}: fold {fold} is not a positive whole number")
    if most is not None and fold > most:
        raise UsageError(f"{path}:{line}: fold {fold} is not one of 1-{most}")
    return fold


def _number(value: str, path: Path, line: int, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"{path}:{line}: {name} {value!r} is not a number") from None


def _label(name: str) -> str:
    return name.strip().replace("_", " ")


def _inside(
    base: Path, value: str, source: Path, line: int, *, allow_outside: bool = False, hint=""
) -> Path:
    """`value` resolved against `base` (symlinks too); refused when it leaves `base`."""
    path = (base / value.strip()).resolve()
    if not allow_outside and not path.is_relative_to(base.resolve()):
        raise UsageError(f"{source}:{line}: {value!r} is outside {base}{hint}")
    return path


def _check_present(absent: list[Path], source: Path, hint: str = "") -> None:
    """One line naming how many listed files are absent and the first three."""
    if absent:
        many = f"{len(absent)} files" if len(absent) > 1 else "a file"
        shown = ", ".join(map(str, absent[:3])) + (", ..." if len(absent) > 3 else "")
        raise UsageError(f"{source}: {many} it lists cannot be found, e.g. {shown}{hint}")


def _nonempty(records: list[Record], source: Path) -> list[Record]:
    if not records:
        raise UsageError(f"{source}: lists no files")
    return records


def _default_segments(base: Path) -> Path:
    for name in SEGMENT_FILES:
        if (base / name).is_file():
            return base / name
    raise UsageError(f"{base}: no {', '.join(SEGMENT_FILES)} (name another with segments=)")


def _segment_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with _open_text(path, "AudioSet segments") as file:
        try:
            for line, text in enumerate(file, 1):
                if not text.strip() or text.lstrip().startswith("#"):
                    continue
                fields = next(csv.reader([text], skipinitialspace=True))
                fields = [f.strip() for f in fields]
                if fields[0] == "YTID":  # a header written as a row
                    continue
                if len(fields) != 4 or not fields[0]:
                    raise UsageError(
                        f"{path}:{line}: expected YTID, start_seconds, end_seconds, "
                        f'"positive_labels"; got {len(fields)} fields'
                    )
                yield line, fields
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: not a readable segments CSV: {exc}") from None


def _class_names(path: Path) -> dict[str, str]:
    """MID -> display name, from class_labels_indices.csv or ontology.json."""
    if path.suffix.lower() == ".json":
        with _open_text(path, "the AudioSet ontology") as file:
            try:
                entries = json.load(file)
                return {entry["id"]: entry["name"] for entry in entries}
            except (ValueError, TypeError, KeyError) as exc:
                raise UsageError(
                    f"{path}: not an ontology (a list of {{id, name}}): {exc}"
                ) from None
    names = {}
    for _, row in _csv_rows(path, ["mid", "display_name"]):
        names[row["mid"].strip()] = row["display_name"].strip()
    return names


def _media_by_stem(folder: Path, prefer: str = "video") -> dict[str, Path]:
    """Name without extension -> file, for the audio and video files under `folder`; files
    of the kind `prefer` win over the other kind, then the first in walking order."""
    found: dict[str, Path] = {}
    for path in find_files([folder]):
        kind = kind_of(path)
        if kind not in ("audio", "video"):
            continue
        if path.stem not in found or (kind == prefer and kind_of(found[path.stem]) != prefer):
            found[path.stem] = path
    return found


def _segment_stems(ytid: str, start: str, end: str) -> list[str]:
    starts = [start]
    ends = [end]
    try:
        starts += [f"{float(start):g}", str(int(float(start))), str(round(float(start) * 1000))]
        ends += [f"{float(end):g}", str(int(float(end)))]
    except ValueError:
        pass
    stems = [ytid]
    stems += [f"{ytid}_{s}" for s in starts]
    stems += [f"{ytid}_{s}_{e}" for s, e in zip(starts, ends)]
    stems += [f"Y{stem}" for stem in stems]
    return list(dict.fromkeys(stems))


def _manifest_file(root: Path) -> Path:
    if root.is_file():
        if root.suffix.lower() not in (".csv", ".jsonl"):
            raise UsageError(f"{root}: a manifest is a .csv or .jsonl file")
        return root
    if root.is_dir():
        present = [root / name for name in MANIFEST_NAMES if (root / name).is_file()]
        if len(present) == 1:
            return present[0]
        if present:
            raise UsageError(f"{root}: both manifest.csv and manifest.jsonl; name one")
        raise UsageError(f"{root}: no manifest.csv or manifest.jsonl")
    raise UsageError(f"{root}: no such file or folder")


ManifestRow = tuple[int, str, list[str], str | None, int | None]


def _split_labels(value: str) -> list[str]:
    return [label.strip() for label in _LABEL_SEPARATORS.split(value) if label.strip()]


def _manifest_csv_rows(path: Path) -> Iterator[ManifestRow]:
    for line, row in _csv_rows(path, ["path", "labels"], optional_values=("labels",)):
        fold = row.get("fold") or ""
        yield (
            line,
            row["path"].strip(),
            _split_labels(row["labels"] or ""),
            (row.get("caption") or "").strip() or None,
            _fold(fold, path, line) if fold.strip() else None,
        )


def _jsonl_rows(path: Path) -> Iterator[ManifestRow]:
    with _open_text(path, "the manifest") as file:
        try:
            lines = list(enumerate(file, 1))
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path}: not UTF-8 text: {exc}") from None
    for line, text in lines:
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{path}:{line}: bad JSON: {exc}") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise UsageError(f"{path}:{line}: expected an object with a string 'path'")
        labels = entry.get("labels")
        if isinstance(labels, str):
            labels = _split_labels(labels)
        elif isinstance(labels, list) and all(isinstance(x, str) for x in labels):
            labels = [label.strip() for label in labels if label.strip()]
        else:
            raise UsageError(f"{path}:{line}: 'labels' must be a list of strings or a string")
        caption = entry.get("caption")
        if caption is not None and not isinstance(caption, str):
            raise UsageError(f"{path}:{line}: 'caption' must be a string")
        fold = entry.get("fold")
        if fold is not None:
            if isinstance(fold, bool) or not isinstance(fold, (int, str)):
                raise UsageError(f"{path}:{line}: fold {fold!r} is not a whole number")
            fold = _fold(str(fold), path, line)
        yield line, entry["path"], labels, (caption or "").strip() or None, fold
