"""Small generated caption collections in the Clotho and AudioCaps layouts.

Each writer puts a few short clips (distinct content: a tone per clip with seeded noise) and
their caption CSV under `root` in the layout its adapter reads (xsearch.eval.caption_datasets),
with the quirks of the real files: a UTF-8 byte-order mark, captions holding quoted commas and
quotes, and file names with spaces. It returns a `Layout` (tests.helpers.eval_layouts) whose
records are what the adapter should give back.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tests.helpers.eval_layouts import RATE, Layout
from tests.helpers.media_factory import sine, write_wav
from xsearch.eval.datasets import Record

CAPTIONS_PER_CLIP = 5


def caption(clip: int, n: int) -> str:
    """A caption with the CSV quirks: a comma inside (quoted in the file), sometimes a quote."""
    quote = ' "loud"' if (clip + n) % 3 == 0 else ""
    return f"sound {clip}, take {n}: a tone{quote} and some noise"


def write_tone(path: Path, clip: int, seconds: float = 1.0) -> Path:
    """int16 mono: a tone of the clip's own pitch and a little seeded noise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7000 + clip)
    wave = sine(180.0 + 37.0 * clip, seconds, RATE, 0.4)
    wave += 0.05 * rng.standard_normal(wave.shape[0]).astype(np.float32)
    write_wav(path, (np.clip(wave, -1, 1) * 32767).astype(np.int16), RATE)
    return path.resolve()


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8-sig") as file:  # with a BOM, as Excel saves
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)


def write_clotho(
    root: Path,
    clips: int = 3,
    split: str = "evaluation",
    seconds: float = 1.0,
    missing: int = 0,
    first: int = 0,
) -> Layout:
    """`root/clotho_captions_<split>.csv` and `root/<split>/*.wav`; the last `missing` clips
    are listed without a file. Clip numbers start at `first` (distinct content per split)."""
    rows, records = [], []
    for c in range(first, first + clips + missing):
        name = f"clip {c} take.wav"  # Clotho file names hold spaces
        captions = [caption(c, n) for n in range(CAPTIONS_PER_CLIP)]
        rows.append([name, *captions])
        if c < first + clips:
            path = write_tone(root / split / name, c, seconds)
            records.append(Record(path, (), captions=tuple(captions)))
    header = ["file_name", *(f"caption_{n + 1}" for n in range(CAPTIONS_PER_CLIP))]
    _write_csv(root / f"clotho_captions_{split}.csv", header, rows)
    return Layout("clotho", root, records, options={"split": split})


def write_audiocaps(root: Path, clips: int = 3, split: str = "test", missing: int = 0) -> Layout:
    """`root/<split>.csv` (one row per caption, the rows of a clip not adjacent) and clips under
    `root/audio/` named in the download variants the adapter accepts, in turn: `<id>.wav`,
    `Y<id>.wav`, `<id>_<start>.wav`, `<id>_<start ms>.wav`, `<id>_<start>_<end>.wav` (in a
    shard folder). The last `missing` clips have no file."""
    rows, records = [], []
    ids = [f"{'-_a'[c % 3]}Yt{c:02d}x_{c}AbC"[:11] for c in range(clips + missing)]
    for n in range(CAPTIONS_PER_CLIP):  # captions interleaved across clips, as in test.csv
        for c, ytid in enumerate(ids):
            rows.append([1000 + 10 * c + n, ytid, 30 * c, caption(c, n)])
    for c, ytid in enumerate(ids[:clips]):
        start = 30 * c
        name = [
            f"{ytid}.wav",
            f"Y{ytid}.wav",
            f"{ytid}_{start}.wav",
            f"{ytid}_{start * 1000}.wav",
            f"shard/{ytid}_{start}_{start + 10}.wav",
        ][c % 5]
        path = write_tone(root / "audio" / name, c)
        captions = tuple(caption(c, n) for n in range(CAPTIONS_PER_CLIP))
        records.append(Record(path, (), captions=captions, start=float(start), end=start + 10.0))
    _write_csv(root / f"{split}.csv", ["audiocap_id", "youtube_id", "start_time", "caption"], rows)
    return Layout("audiocaps", root, records, options={"split": split})
