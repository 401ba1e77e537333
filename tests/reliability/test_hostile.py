"""Hostile inputs: pickled code in a checkpoint, a FAISS file with absurd sizes, images that
declare giant dimensions, and a corpus of broken media ingested by real worker processes."""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import shutil
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tests.helpers.cli import ROOT
from tests.helpers.media_factory import png_declaring, sine, write_audio, write_video, write_wav
from tests.helpers.store import commit_asset
from tests.helpers.tally import record
from xsearch.errors import CheckpointError, MediaError
from xsearch.media import load_image
from xsearch.store.manifest import FileEntry, StoreCorrupt, publish, read_manifest
from xsearch.store.store import Store

pytestmark = pytest.mark.slow  # a corpus of hostile media and checkpoints

RATE = 44100


# --- checkpoints with pickled code -----------------------------------------------------------
# tests/models/test_checkpoint.py::test_pickle_payload_is_refused_and_never_runs covers the zip
# format
# read directly; here every serialisation torch.load accepts, and the command line.


class Payload:
    """Unpickling this touches `sentinel`: code from the file running."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (Path.touch, (self.sentinel,))


def evil_checkpoint(path: Path, sentinel: Path, how: str) -> Path:
    import torch

    state = {"visual.conv1.weight": torch.zeros(1), "logit_scale": Payload(sentinel)}
    if how == "zip":
        torch.save(state, path)
    elif how == "legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:  # a bare pickle
        with open(path, "wb") as f:
            pickle.dump(state, f)
    return path


@pytest.mark.parametrize("how", ["zip", "legacy", "pickle"])
def test_pickled_code_in_a_checkpoint_never_runs(tmp_path, how):
    from xsearch.models.checkpoint import load_checkpoint, read_state_dict

    # The payload is live: the file asks an unpickler to call Path.touch (read by
    # disassembling the pickle, which runs nothing).
    control = evil_checkpoint(tmp_path / "control.pt", tmp_path / "control", "pickle")
    ops = list(pickletools.genops(control.read_bytes()))
    assert any(arg == "Path.touch" for _, arg, _ in ops)
    assert "REDUCE" in {op.name for op, _, _ in ops}

    sentinel = tmp_path / "pwned"
    path = evil_checkpoint(tmp_path / f"evil-{how}.pt", sentinel, how)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note on the pickle protocol of a bare pickle
        with pytest.raises(CheckpointError, match="refused for safety") as info:
            read_state_dict(path)
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not sentinel.exists()
    record("hostile inputs", f"pickle checkpoint ({how})", tried=1, survived=1)


def test_pickled_checkpoint_on_the_command_line(tmp_path):
    sentinel = tmp_path / "pwned"
    path = evil_checkpoint(tmp_path / "evil.pt", sentinel, "zip")
    exe = Path(sys.executable).with_name("xsearch")
    result = subprocess.run(
        [str(exe), "model", "info", "--weights", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused for safety" in lines[0], result.stderr
    assert not sentinel.exists()


# --- FAISS files with absurd sizes -----------------------------------------------------------

# Where a size lives in a serialised IndexIDMap2 (see indexes/safety.py for the layout). Each
# forged value would make an unguarded FAISS allocate and zero about 1 GB or more, or fail.
FORGERIES = {
    "ntotal 2^40": ("Flat", "ntotal", 1 << 40),
    "d 2^30": ("Flat", "d", 1 << 30),
    "flat array 2^28 floats": ("Flat", "codes", 1 << 28),
    "id map 2^27 ids": ("Flat", "ids", 1 << 27),
    "hnsw storage 2^28 floats": ("HNSW8", "codes", 1 << 28),
    "hnsw levels 2^27": ("HNSW8", "hnsw", 1 << 27),
    "ivf list 2^27 entries": ("IVF4,Flat", "ilar", 1 << 27),
}


def forged_index(factory: str, field: str, value: int) -> bytes:
    from xsearch.indexes.faiss_index import build, to_bytes

    vectors = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    data = bytearray(to_bytes(build(np.arange(300), vectors, factory)))
    if field == "ntotal":
        data[8:16] = struct.pack("<q", value)
    elif field == "d":
        data[4:8] = struct.pack("<i", value)
    elif field == "codes":  # the length of the flat vector array
        at = data.find(b"IxFI") + 37
        data[at : at + 8] = struct.pack("<Q", value)
    elif field == "ids":  # the length of the id map, which ends the file
        at = len(data) - 8 * 300 - 8
        data[at : at + 8] = struct.pack("<Q", value)
    elif field == "hnsw":  # HNSW's first array (assign_probas)
        at = data.find(b"IHNf") + 37
        data[at : at + 8] = struct.pack("<Q", value)
    elif field == "ilar":  # the size of the first inverted list
        at = data.find(b"ilar") + 32
        data[at : at + 8] = struct.pack("<Q", value)
    return bytes(data)


def small_store(directory: Path, n: int = 6) -> Path:
    commit_asset(directory, "/m/a.wav", n, seed=1)
    return directory


def forge_faiss(directory: Path, data: bytes, *, manifest_too: bool) -> Path:
    """Replace the audio FAISS file with `data`; with `manifest_too`, forge the manifest's
    size and sha256 for it as well (a hostile index directory)."""
    import hashlib

    manifest = read_manifest(directory)
    entry = manifest.files["seg/1/faiss/audio"]
    path = directory / entry.path
    path.write_bytes(data)
    if manifest_too:
        files = dict(manifest.files)
        files["seg/1/faiss/audio"] = FileEntry(
            entry.path, hashlib.sha256(data).hexdigest(), len(data)
        )
        from dataclasses import replace

        publish(directory, replace(manifest, files=files))
    return path


def test_absurd_faiss_file_never_reaches_faiss_through_the_store(tmp_path, monkeypatch):
    import faiss

    directory = small_store(tmp_path / "idx")
    forge_faiss(directory, forged_index("Flat", "ntotal", 1 << 40), manifest_too=False)
    seen = []
    for name in ("deserialize_index", "read_index"):  # bytes, or a file
        real = getattr(faiss, name)
        monkeypatch.setattr(faiss, name, lambda *a, real=real: seen.append(a) or real(*a))
    expected = r"faiss-audio-g1\.index: size mismatch .*verify --repair"
    with pytest.raises(StoreCorrupt, match=expected):
        Store.open(directory).faiss_index("audio")
    assert seen == []


# The child loads every forged file through a store whose manifest vouches for it, and reports
# what happened and its peak memory. Its address space is capped at 3 GB over what it maps at
# start, so that a regression fails the test instead of taking the machine's memory.
_FORGED_CHILD = """
import json, os, resource, sys
from pathlib import Path
mapped = int(open('/proc/self/statm').read().split()[0]) * os.sysconf('SC_PAGE_SIZE')
import faiss, pyarrow
from xsearch.store.manifest import StoreCorrupt
from xsearch.store.store import Store
resource.setrlimit(resource.RLIMIT_AS, (mapped + (3 << 30), resource.RLIM_INFINITY))
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {}
for directory in sys.argv[1:]:
    try:
        index = Store.open(Path(directory)).faiss_index("audio")
        out[directory] = "loaded %d" % index.ntotal
    except StoreCorrupt as e:
        out[directory] = "refused: " + str(e)
    except BaseException as e:
        out[directory] = "ERROR %s: %s" % (type(e).__name__, e)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"results": out, "start_mb": start // 1024, "peak_mb": peak // 1024}))
"""


def test_absurd_faiss_sizes_with_a_forged_manifest_are_refused_in_bounded_memory(tmp_path):
    base = small_store(tmp_path / "base")
    dirs = {}
    for name, (factory, field, value) in FORGERIES.items():
        directory = tmp_path / name.replace(" ", "-").replace("^", "")
        shutil.copytree(base, directory)
        forge_faiss(directory, forged_index(factory, field, value), manifest_too=True)
        dirs[name] = str(directory)
    honest = tmp_path / "honest"
    shutil.copytree(base, honest)
    forge_faiss(honest, forged_index("HNSW8", "none", 0), manifest_too=True)
    child = subprocess.run(
        [sys.executable, "-c", _FORGED_CHILD, *dirs.values(), str(honest)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])
    results = report["results"]
    for name, directory in dirs.items():
        outcome = results[directory]
        assert outcome.startswith("refused: "), (name, outcome)
        assert "not a loadable FAISS index" in outcome and "xsearch verify --repair" in outcome
        assert "\n" not in outcome
        record("hostile inputs", f"faiss {name}", tried=1, survived=1)
    assert results[str(honest)] == "loaded 300"
    # An unguarded load of any of these allocates 1 GB or more before failing.
    assert report["peak_mb"] - report["start_mb"] < 200, report


def test_forged_faiss_file_is_reported_and_rebuilt_by_verify(tmp_path):
    from xsearch.store.repair import repair_index
    from xsearch.store.verify import verify_index

    directory = small_store(tmp_path / "idx")
    forge_faiss(directory, forged_index("Flat", "codes", 1 << 28), manifest_too=True)
    verdict = verify_index(directory)
    assert not verdict.healthy
    (bad,) = [c for c in verdict.checks if not c.ok]
    assert bad.role == "seg/1/faiss/audio" and "matching checksum" in bad.problem
    repaired = repair_index(directory)
    assert repaired.healthy and repaired.lost == []
    assert Store.open(directory).faiss_index("audio").ntotal == 6


def test_faiss_without_deserialization_limits_loads_in_a_capped_child(tmp_path, monkeypatch):
    """Older FAISS has no deserialisation limits: files the header check cannot vouch for
    are loaded once in a child process with a capped address space first."""
    import faiss

    from xsearch.indexes.faiss_index import from_bytes
    from xsearch.indexes.safety import UnsafeIndexFile, load_guarded

    monkeypatch.delattr(faiss, "set_deserialization_vector_byte_limit")
    bad = tmp_path / "bad.index"
    bad.write_bytes(forged_index("HNSW8", "codes", 1 << 28))
    with pytest.raises(UnsafeIndexFile):
        load_guarded(bad, lambda: from_bytes(bad.read_bytes()))
    good = tmp_path / "good.index"
    good.write_bytes(forged_index("HNSW8", "none", 0))
    assert load_guarded(good, lambda: from_bytes(good.read_bytes())).ntotal == 300


# --- images that declare giant sizes ---------------------------------------------------------


def _jpeg(path: Path, width: int, height: int) -> None:
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path, quality=90)
    data = bytearray(path.read_bytes())
    sof = data.find(b"\xff\xc0")  # baseline start of frame: length, precision, height, width
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))


def _webp(path: Path, width: int, height: int) -> None:
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path, lossless=True)
    data = bytearray(path.read_bytes())
    at = data.find(b"VP8L") + 9  # chunk size and signature byte, then 14-bit sizes - 1
    bits = struct.unpack("<I", data[at : at + 4])[0] & ~((1 << 28) - 1)
    bits |= ((width - 1) & 0x3FFF) | (((height - 1) & 0x3FFF) << 14)
    data[at : at + 4] = struct.pack("<I", bits)
    path.write_bytes(bytes(data))


def _gif(path: Path, width: int, height: int) -> None:
    Image.new("P", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    data[6:10] = struct.pack("<HH", width, height)  # the logical screen
    frame = data.find(b"\x2c")  # the image descriptor
    data[frame + 5 : frame + 9] = struct.pack("<HH", width, height)
    path.write_bytes(bytes(data))


def _bmp(path: Path, width: int, height: int) -> None:
    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    data[18:26] = struct.pack("<ii", width, height)
    path.write_bytes(bytes(data))


def _tiff(path: Path, width: int, height: int) -> None:
    Image.new("RGB", (8, 8)).save(path, compression="raw")
    data = bytearray(path.read_bytes())
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        tag = struct.unpack("<H", data[entry : entry + 2])[0]
        if tag in (256, 257):  # ImageWidth, ImageLength, as LONG
            data[entry + 2 : entry + 12] = struct.pack("<HII", 4, 1, (width, height)[tag - 256])
    path.write_bytes(bytes(data))


GIANTS = {
    "huge.png": (png_declaring, 100_000, 100_000),
    "bomb-between-1x-and-2x.png": (png_declaring, 10_000, 10_000),  # Pillow only warns
    "huge.jpg": (_jpeg, 65_000, 65_000),
    "huge.webp": (_webp, 16_384, 16_384),
    "huge.gif": (_gif, 65_535, 65_535),
    "huge.bmp": (_bmp, 100_000, 100_000),
    "huge.tif": (_tiff, 100_000, 100_000),
}


@pytest.mark.parametrize("name", list(GIANTS))
def test_giant_declared_image_is_refused_before_decoding(tmp_path, monkeypatch, name):
    make, width, height = GIANTS[name]
    path = tmp_path / name
    make(path, width, height)

    def decode(self):
        raise AssertionError("decoding started")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(MediaError, match="too large") as info:
            load_image(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    record("hostile inputs", f"giant image {name}", tried=1, survived=1)


# --- a corpus of broken media ----------------------------------------------------------------


def _flip(data: bytes, at: float, n: int = 64) -> bytes:
    out = bytearray(data)
    start = int(len(out) * at)
    for i in range(start, min(start + n, len(out))):
        out[i] ^= 0xFF
    return bytes(out)


def _boxes(data: bytes) -> dict[bytes, int]:
    """Offsets of the top-level boxes of an MP4."""
    found, at = {}, 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        found[kind] = at
        if size < 8:
            break
        at += size
    return found


def _chunk(data: bytes, name: bytes) -> int:
    """Offset of a RIFF chunk of a WAV."""
    at = 12
    while at + 8 <= len(data):
        kind, size = struct.unpack("<4sI", data[at : at + 8])
        if kind == name:
            return at
        at += 8 + size + (size & 1)
    raise ValueError(name)


def _patch(data: bytes, at: int, fmt: str, *values) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, *values)
    return bytes(out)


def make_corpus(root: Path) -> tuple[list[str], dict[str, Path]]:
    """Good files, then at least 20 kinds of broken ones; returns (good names, specials the
    scanner must skip)."""
    root.mkdir()
    src = root.parent / "sources"
    src.mkdir()
    tone = sine(440, 1.0, RATE)
    write_wav(src / "a.wav", tone * 32767, RATE)
    write_audio(src / "a.flac", tone, RATE, "flac")
    write_audio(src / "a.ogg", np.stack([tone, tone], axis=1), RATE, "vorbis")
    write_audio(src / "a.opus", tone, RATE, "libopus", stream_rate=48000)
    write_video(src / "a.mp4", 20)
    write_video(src / "fast.mp4", 20, options={"movflags": "faststart"})
    write_video(src / "a.mkv", 20)
    Image.new("RGB", (64, 48), (30, 120, 200)).save(src / "a.png")
    Image.new("RGB", (64, 48), (200, 120, 30)).save(src / "a.jpg", quality=90)
    read = {p.name: p.read_bytes() for p in src.iterdir()}
    wav, mp4 = read["a.wav"], read["a.mp4"]

    good = ["good.wav", "good.flac", "good.mp4", "good.png", "good.jpg"]
    for name in good:
        (root / name).write_bytes(read["a" + Path(name).suffix])

    boxes = _boxes(mp4)
    fmt, data = _chunk(wav, b"fmt "), _chunk(wav, b"data")
    mvhd = mp4.find(b"mvhd")
    avc1 = mp4.find(b"avc1")
    bad = {
        "truncated.mp4": mp4[: len(mp4) // 2],
        "truncated.mkv": read["a.mkv"][: len(read["a.mkv"]) // 2],
        "truncated.wav": wav[:60],
        "truncated.flac": read["a.flac"][:200],
        "truncated.ogg": read["a.ogg"][: len(read["a.ogg"]) // 3],
        "truncated.png": read["a.png"][: len(read["a.png"]) // 2],
        "truncated.jpg": read["a.jpg"][: len(read["a.jpg"]) // 2],
        "zero-size-mdat.mp4": _patch(mp4, boxes[b"mdat"], ">I", 0),
        "zero-size-moov.mp4": _patch(read["fast.mp4"], _boxes(read["fast.mp4"])[b"moov"], ">I", 0),
        "huge-box.mp4": _patch(mp4, boxes[b"mdat"], ">I4sQ", 1, b"mdat", 1 << 62),
        "endless-duration.mp4": _patch(mp4, mvhd + 4 + 16, ">I", 0xFFFFFFFF),
        "huge-dimensions.mp4": _patch(mp4, avc1 + 4 + 24, ">HH", 65535, 65535),
        "png-named.wav": read["a.png"],
        "wav-named.mp4": wav,
        "wav-named.png": wav,
        "text-named.mp3": b"this is not an mp3\n" * 50,
        "random-bytes.webm": np.random.default_rng(1).bytes(4096),
        "header-only.flac": b"fLaC" + np.random.default_rng(2).bytes(100),
        "id3-tag-only.mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00",
        "zero-channels.wav": _patch(wav, fmt + 10, "<H", 0),
        "zero-sample-rate.wav": _patch(wav, fmt + 12, "<I", 0),
        "huge-sample-rate.wav": _patch(wav, fmt + 12, "<I", 0xFFFFFFFF),
        "flipped-header.wav": _flip(wav, 0.4 * 44 / len(wav), 24),
        "flipped-payload.mp4": _flip(_flip(mp4, 0.33), 0.66),
        "flipped-payload.png": _flip(read["a.png"], 0.5),
        "flipped-payload.jpg": _flip(read["a.jpg"], 0.5),
        "flipped-payload.opus": _flip(read["a.opus"], 0.5),
        "zero-bytes.wav": b"",
        "zero-bytes.png": b"",
        "zero-bytes.mp4": b"",
    }
    for name, content in bad.items():
        (root / name).write_bytes(content)
    png_declaring(root / "huge-dimensions.png", 100_000, 100_000)
    _jpeg(root / "huge-dimensions.jpg", 65_000, 65_000)
    # An endless stream: a WAV whose sizes say "to the end", over 256 MB of (sparse) silence.
    with open(root / "endless.wav", "wb") as f:
        f.write(_patch(_patch(wav[: data + 8], 4, "<I", 0xFFFFFFFF), data + 4, "<I", 0xFFFFFFFF))
        f.truncate(256 << 20)

    specials = {
        "dir.mp4": root / "dir.mp4",  # a folder named like a video
        "loop-a.wav": root / "loop-a.wav",  # a symlink loop
        "dev-zero.wav": root / "dev-zero.wav",  # an endless device, out of the roots
        "fifo.wav": root / "fifo.wav",  # a pipe nobody writes: opening it blocks
    }
    specials["dir.mp4"].mkdir()
    os.symlink(root / "loop-b.wav", specials["loop-a.wav"])
    os.symlink(root / "loop-a.wav", root / "loop-b.wav")
    os.symlink("/dev/zero", specials["dev-zero.wav"])
    os.mkfifo(specials["fifo.wav"])
    return good, specials


# Run the ingest command and report its peak memory and that of the worker processes (the
# largest of the waited-for descendants).
_MEASURE = """
import json, resource, subprocess, sys, time
began = time.monotonic()
child = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"rc": child.returncode, "stdout": child.stdout, "stderr": child.stderr,
                  "seconds": time.monotonic() - began,
                  "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024}))
"""

TIMEOUT = 5


def test_media_fuzz_corpus_ingests_without_hang_crash_or_runaway_memory(tmp_path):
    from xsearch.ingest.scan import find_files

    corpus = tmp_path / "corpus"
    good, specials = make_corpus(corpus)
    scanned = {str(p) for p in find_files([corpus])}
    assert not {str(p) for p in specials.values()} & scanned  # the scanner skips these
    kinds = len(scanned) - len(good)
    assert kinds >= 20

    home = tmp_path / "home"
    exe = str(Path(sys.executable).with_name("xsearch"))
    args = [exe, "ingest", str(corpus), "--index", "fuzz", "-w", "random", "--config",
            "audioclip-tiny", "--device", "cpu", "--workers", "2", "--timeout", str(TIMEOUT),
            "--memory-mb", "512", "--json"]  # fmt: skip
    measured = subprocess.run(
        [sys.executable, "-c", _MEASURE, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "XSEARCH_HOME": str(home), "COLUMNS": "200"},
    )
    run = json.loads(measured.stdout)
    assert run["rc"] == 0, run["stderr"]  # not a signal, not an error
    report = json.loads(run["stdout"].strip().splitlines()[-1])

    store = Store.open(home / "fuzz")
    indexed = set(store.assets.column("path").to_pylist())
    failed = {f["path"]: f["reason"] for f in report["failed"]}
    assert set(store.failures.column("path").to_pylist()) == set(failed)
    assert indexed | set(failed) == scanned  # every file is indexed or listed as failed
    assert not indexed & set(failed)
    assert all(r and "\n" not in r for r in failed.values())
    assert {str(corpus / name) for name in good} <= indexed
    for name in ("truncated.wav", "zero-bytes.mp4", "huge-dimensions.png", "text-named.mp3"):
        assert str(corpus / name) in failed
    assert "too large" in failed[str(corpus / "huge-dimensions.png")]
    for reason in failed.values():
        assert "timed out" not in reason or reason == f"timed out after {TIMEOUT} s"
    # No hang: the "endless" file (its sizes say "to the end" of 256 MB) streams to a spill
    # file as it decodes, so memory never stops it: it is indexed, or cut off by the time
    # limit on a slow machine; and the whole run stays far below one timeout per file.
    endless = str(corpus / "endless.wav")
    assert endless in indexed or failed[endless] == f"timed out after {TIMEOUT} s"
    assert run["seconds"] < 120 + TIMEOUT * 2, run["seconds"]
    # Workers are capped at their libraries (~0.3 GB) plus 512 MB; the ingest process holds the
    # tiny model; neither grows with the 256 MB endless file or the giant declared sizes.
    assert run["peak_mb"] < 1500, run["peak_mb"]
    survived = len(indexed) + len(failed)
    record("hostile inputs", "media fuzz corpus", tried=len(scanned), survived=survived)
    record("hostile inputs", "scanner specials", tried=len(specials), survived=len(specials))


def test_file_name_that_is_not_utf8_is_indexed_or_listed_as_failed(tmp_path, tiny_audioclip):
    from xsearch.ingest.pipeline import IngestOptions, ingest
    from xsearch.ingest.scan import find_files

    encoder = tiny_audioclip

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    tone = sine(440, 1.0, RATE) * 32767
    write_wav(corpus / "good.wav", tone, RATE)
    write_wav(corpus / os.fsdecode(b"caf\xe9.wav"), tone, RATE)
    report = ingest(find_files([corpus]), tmp_path / "idx", encoder, IngestOptions(workers=0))
    assert report.added + len(report.failed) == 2
    assert report.added == 1 and report.failed[0][0].endswith("caf\\xe9.wav")
    again = ingest(find_files([corpus]), tmp_path / "idx", encoder, IngestOptions(workers=0))
    assert again.generation == report.generation  # nothing new: no commit
