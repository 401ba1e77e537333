"""Small generated collections in each dataset adapter's layout (xsearch.eval.datasets).

Each `write_*` function writes a few classes of a few short files under `root`, in the layout
its adapter reads, and returns a `Layout`: what to pass to `load_dataset` and the records (and
skipped entries) the adapter should give back. Every file has distinct content (a tone per
class, varied per file, with seeded noise), since ingest indexes equal content only once.
Used by tests/eval/test_eval_datasets.py and by the evaluation benchmarks' tests; `build`
and `Planted` make indexes of planted vectors whose metrics are known.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers.media_factory import sine, write_video, write_wav
from tests.helpers.store import MODEL
from xsearch.eval.datasets import Record
from xsearch.models.fake import fake_spec
from xsearch.store.store import Changes, Store, Writer

RATE = 44100
SECONDS = 1.0

ESC50_CLASSES = ["dog", "chirping_birds", "vacuum_cleaner", "rain", "church_bells", "crow"]
US8K_CLASSES = ["air_conditioner", "car_horn", "children_playing", "dog_bark", "street_music"]
# (mid, display name): names with commas, as in class_labels_indices.csv
AUDIOSET_CLASSES = [
    ("/m/0bt9lr", "Dog"),
    ("/m/06mb1", "Rain"),
    ("/m/05zppz", "Male speech, man speaking"),
    ("/m/03kmc9", "Siren"),
    ("/m/0jbk", "Animal"),
]
FOLDER_CLASSES = ["dog", "rain", "siren", "bells"]


@dataclass
class Layout:
    kind: str  # the adapter's name
    root: Path  # what load_dataset takes as root
    records: list[Record]  # what the adapter should return, in its order
    skipped: list[tuple[str, str]] = field(default_factory=list)
    options: dict = field(default_factory=dict)  # load_dataset options this layout needs

    @property
    def classes(self) -> list[str]:
        return sorted({label for record in self.records for label in record.labels})


def clip(cls: int, index: int, seconds: float = SECONDS) -> np.ndarray:
    """int16 mono samples: a tone for the class, a second partial and noise for the file."""
    rng = np.random.default_rng(1000 * cls + index)
    wave = sine(220.0 * (cls + 1), seconds, RATE, 0.4)
    wave += sine(55.0 * (index + 2) + 13.0 * cls, seconds, RATE, 0.15)
    wave += 0.05 * rng.standard_normal(wave.shape[0]).astype(np.float32)
    return (np.clip(wave, -1, 1) * 32767).astype(np.int16)


def write_clip(path: Path, cls: int, index: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, clip(cls, index), RATE)
    return path.resolve()


def write_picture(path: Path, cls: int, index: int, size: tuple[int, int] = (48, 32)) -> Path:
    """A picture of the class's colour, with a per-file stripe."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:] = ((70 * cls) % 256, (40 + 90 * cls) % 256, (200 - 50 * cls) % 256)
    rgb[:, (3 * index) % w : (3 * index) % w + 3] = 255
    Image.fromarray(rgb).save(path)
    return path.resolve()


def write_movie(path: Path, cls: int, index: int) -> Path:
    """A 1 s, 64x48 video with a sound of its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, n_frames=10, fps=10, audio_freq=220.0 * (cls + 1) + 17.0 * index)
    return path.resolve()


def write_media(path: Path, cls: int, index: int) -> Path:
    """A file of the kind its extension says."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        return write_picture(path, cls, index)
    if suffix == ".mp4":
        return write_movie(path, cls, index)
    return write_clip(path, cls, index)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)


def write_esc50(root: Path, classes: int = 3, per_class: int = 2, folds: int = 2) -> Layout:
    """`root/meta/esc50.csv` and `root/audio/*.wav`; file i of a class is in fold i % folds + 1;
    even-numbered classes are in ESC-10."""
    rows, records = [], []
    for c in range(classes):
        category = ESC50_CLASSES[c]
        for i in range(per_class):
            fold = i % folds + 1
            src = 100000 + 10 * c + i
            name = f"{fold}-{src}-A-{c}.wav"
            rows.append([name, fold, c, category, c % 2 == 0, src, "A"])
    rows.sort(key=lambda row: row[0])  # the real CSV is sorted by file name
    for name, fold, c, category, *_ in rows:
        path = write_clip(root / "audio" / name, c, int(name.split("-")[1]) % 10)
        records.append(Record(path, (category.replace("_", " "),), fold=fold))
    header = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    _write_csv(root / "meta" / "esc50.csv", header, rows)
    return Layout("esc50", root, records)


def write_urbansound8k(root: Path, classes: int = 3, per_class: int = 2, folds: int = 2) -> Layout:
    """`root/metadata/UrbanSound8K.csv` and `root/audio/fold<k>/*.wav`."""
    rows, records = [], []
    for c in range(classes):
        name = US8K_CLASSES[c]
        for i in range(per_class):
            fold = i % folds + 1
            fs_id = 7000 + 10 * c + i
            slice_name = f"{fs_id}-{c}-0-{i}.wav"
            rows.append([slice_name, fs_id, 1.5 * i, 1.5 * i + 1, 1, fold, c, name])
            path = write_clip(root / "audio" / f"fold{fold}" / slice_name, c, i)
            records.append(Record(path, (name.replace("_", " "),), fold=fold))
    header = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
    _write_csv(root / "metadata" / "UrbanSound8K.csv", header, rows)
    return Layout("urbansound8k", root, records)


def write_audioset(
    root: Path, classes: int = 3, per_class: int = 2, missing: int = 1, video: bool = True
) -> Layout:
    """`root/eval_segments.csv` (the official format), `root/class_labels_indices.csv`, and
    media under `root/downloads/` in the usual naming variants (`YTID.wav`,
    `YTID_START.wav`, `YYTID.wav`, `YTID_START_END.mp4`, in a shard folder); odd files also
    carry the next class's label. The last `missing` segments have no local file."""
    names = dict(AUDIOSET_CLASSES)
    mids = [mid for mid, _ in AUDIOSET_CLASSES]
    lines = [
        "# Segments csv created Sun Mar  5 10:54:31 2017",
        f"# num_ytids={classes * per_class + missing}, num_segs={classes * per_class + missing}",
        "# YTID, start_seconds, end_seconds, positive_labels",
    ]
    records, skipped = [], []
    n = 0
    for c in range(classes):
        for i in range(per_class):
            ytid = f"{'-_'[n % 2]}a{c}B{i}_x{n:04d}"  # YTIDs may start with - or _ and hold _
            start, end = f"{10 * n:.3f}", f"{10 * n + 10:.3f}"
            labels = [mids[c]] + ([mids[(c + 1) % len(mids)]] if i % 2 else [])
            lines.append(f'{ytid}, {start}, {end}, "{",".join(labels)}"')
            variant = n % 4 if video else n % 3
            downloads = root / "downloads"
            if variant == 0:
                path = write_clip(downloads / f"{ytid}.wav", c, i)
            elif variant == 1:
                path = write_clip(downloads / f"{ytid}_{start}.wav", c, i)
            elif variant == 2:
                path = write_clip(downloads / "shard1" / f"Y{ytid}.wav", c, i)
            else:
                path = write_movie(downloads / f"{ytid}_{10 * n}_{10 * n + 10}.mp4", c, i)
            record_labels = tuple(names[mid] for mid in labels)
            records.append(Record(path, record_labels, start=10.0 * n, end=10.0 * n + 10))
            n += 1
    for k in range(missing):
        ytid = f"gone{k:07d}"
        lines.append(f'{ytid}, 0.000, 10.000, "{mids[0]}"')
        skipped.append((ytid, "no local file"))
    (root / "eval_segments.csv").write_text("\n".join(lines) + "\n")
    _write_csv(
        root / "class_labels_indices.csv",
        ["index", "mid", "display_name"],
        [[k, mid, name] for k, (mid, name) in enumerate(AUDIOSET_CLASSES)],
    )
    return Layout("audioset", root, records, skipped)


def write_folders(root: Path, classes: int = 3, per_class: int = 2, video: bool = True) -> Layout:
    """`root/<class>/` holding wavs, pngs and (if `video`) an mp4: the kinds cycle per file."""
    suffixes = [".wav", ".png", ".mp4"] if video else [".wav", ".png"]
    records = []
    for c in range(classes):
        label = FOLDER_CLASSES[c]
        for i in range(per_class):
            suffix = suffixes[(c + i) % len(suffixes)]
            path = write_media(root / label / f"{label}-{i}{suffix}", c, i)
            records.append(Record(path, (label,)))
    records.sort(key=lambda r: (r.labels[0], r.path.name))  # the walk's order
    return Layout("folders", root, records)


def write_manifest(
    root: Path, classes: int = 3, per_class: int = 2, fmt: str = "csv", folds: int = 2
) -> Layout:
    """`root/manifest.<fmt>` (csv or jsonl) listing files under `root/media/`: audio and
    pictures (and the first class's last file a video), odd files with a second label, even
    files with a caption, file i in fold i % folds + 1 (no fold column when `folds` is 0)."""
    records = []
    entries = []
    for c in range(classes):
        label = FOLDER_CLASSES[c]
        for i in range(per_class):
            suffix = ".png" if (c + i) % 2 else ".wav"
            if c == 0 and i == per_class - 1:
                suffix = ".mp4"
            relative = f"media/{label}/{label}-{i}{suffix}"
            path = write_media(root / relative, c, i)
            labels = (label,) + (("loud",) if i % 2 else ())
            caption = f"a {label} number {i}" if i % 2 == 0 else None
            fold = i % folds + 1 if folds else None
            records.append(Record(path, labels, caption, fold))
            entries.append((relative, labels, caption, fold))
    if fmt == "csv":
        header = ["path", "labels", "caption"] + (["fold"] if folds else [])
        rows = [
            [rel, ";".join(labels), caption or "", *([fold] if folds else [])]
            for rel, labels, caption, fold in entries
        ]
        _write_csv(root / "manifest.csv", header, rows)
        file = root / "manifest.csv"
    elif fmt == "jsonl":
        file = root / "manifest.jsonl"
        lines = []
        for n, (rel, labels, caption, fold) in enumerate(entries):
            entry: dict = {"path": rel, "labels": list(labels) if n % 2 else "|".join(labels)}
            if caption:
                entry["caption"] = caption
            if fold:
                entry["fold"] = fold
            lines.append(json.dumps(entry))
        file.write_text("\n".join(lines) + "\n")
    else:
        raise ValueError(f"fmt must be csv or jsonl, not {fmt!r}")
    return Layout("manifest", file, records)


def write_av_pairs(root: Path, clips: int = 4, missing: tuple[int, ...] = (1,)) -> Layout:
    """CAV-MAE's retrieval layout: `root/eval.json` listing clips whose sound is
    `audio/<id>.wav` and whose frames are `frames/frame_<k>/<id>.jpg` (frame 5 written); the
    clips numbered in `missing` have no files (skipped)."""
    records, skipped, entries = [], [], []
    for number in range(clips):
        clip_id = f"vid{number}"
        entries.append({"video_id": clip_id, "wav": f"audio/{clip_id}.wav", "video_path": "frames",
                        "labels": "/m/09x0r"})  # fmt: skip
        if number in missing:
            skipped.append((clip_id, f"no {clip_id}.wav or {clip_id}.jpg"))
            continue
        sound = write_clip(root / "audio" / f"{clip_id}.wav", number, 0)
        picture = write_picture(root / "frames" / "frame_5" / f"{clip_id}.jpg", number, 0)
        records += [Record(sound, (clip_id,)), Record(picture, (clip_id,))]
    root.mkdir(parents=True, exist_ok=True)
    (root / "eval.json").write_text(json.dumps({"data": entries}))
    return Layout("av-pairs", root, records, skipped)


WRITERS = {
    "esc50": write_esc50,
    "urbansound8k": write_urbansound8k,
    "audioset": write_audioset,
    "folders": write_folders,
    "manifest": write_manifest,
    "av-pairs": write_av_pairs,
}


def write_layout(kind: str, root: Path, **options) -> Layout:
    """The generated collection of adapter `kind` (see WRITERS) under `root`."""
    return WRITERS[kind](root, **options)


CLASSES = ["dog", "rain", "siren"]


DIRECTIONS = {c: np.eye(1024, dtype=np.float32)[10 * n] for n, c in enumerate(CLASSES)}


def build(directory, files, widths: dict[str, int] | None = None):
    """files: [(labels, {modality: [vector, ...]})] -> a committed store; `widths` (modality
    -> vector width) makes an index of those modalities (default: the store's own choice)."""
    with Writer(directory, MODEL, widths=widths) as writer:
        changes = Changes()
        for n, (labels, items) in enumerate(files):
            asset = writer.allocate_asset()
            changes.new_assets.append(
                dict(asset_id=asset, path=f"/m/{n}", content_hash=str(n), kind="video",
                     bytes=1, mtime=0.0, duration=1.0, labels=list(labels))
            )  # fmt: skip
            for modality, vectors in items.items():
                ids = writer.allocate_items(len(vectors))
                for i in ids:
                    changes.new_items.append(
                        dict(item_id=int(i), asset_id=asset, modality=modality, start=0.0,
                             end=1.0, text=None)
                    )  # fmt: skip
                changes.add_vectors(modality, ids, np.stack(vectors))
        writer.commit(changes)
    return Store.open(directory)


class Planted:
    """Stands in for `xsearch.api.Index` over a store from `build`: text queries embed to the
    normalized sum of their labels' directions (labels joined by ", ")."""

    def __init__(self, store: Store, name: str = "planted") -> None:
        self.store = store
        self.name = name
        # a model of one space, as wide as the planted directions
        self.spec = fake_spec(int(next(iter(DIRECTIONS.values())).shape[0]))

    def embed_queries(self, text=()):
        out = []
        for t in text:
            v = sum(DIRECTIONS[label] for label in t.split(", "))
            out.append(v / np.linalg.norm(v))
        return np.stack(out)
