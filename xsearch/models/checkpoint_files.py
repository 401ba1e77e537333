"""Telling a PyTorch checkpoint from the files people mistake for one, without torch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from xsearch.errors import CheckpointError

# How the formats torch.save writes begin: a zip archive (since PyTorch 1.6), or a pickle
# (protocol 2 and later start with the PROTO opcode, 0x80, then the protocol number).
_CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")

# Signatures of files people mistake for checkpoints: (offset, bytes, what it is).
_SIGNATURES = (
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"GIF8", "a GIF image"),
    (8, b"WEBP", "a WebP image"),
    (8, b"WAVE", "a WAV audio file"),
    (0, b"OggS", "an Ogg audio file"),
    (0, b"fLaC", "a FLAC audio file"),
    (0, b"ID3", "an MP3 audio file"),
    (4, b"ftyp", "an MP4/MOV video"),
    (0, b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
    (0, b"%PDF", "a PDF document"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"7z\xbc\xaf", "a 7-Zip archive"),
    (0, b"\x89HDF", "an HDF5 file (a Keras or other non-PyTorch checkpoint)"),
    (0, b"version https://git-lfs", "a Git LFS pointer, not the file it points to"),
)


def describe_non_checkpoint(path: Path) -> str | None:
    """What `path` looks like when it cannot be a PyTorch checkpoint ("a JPEG image", "random
    bytes", "empty"), or None when it begins as one (a zip archive or a pickle)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        return "empty"
    if head.startswith(_CHECKPOINT_MAGIC):
        return None
    for offset, magic, what in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return what
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the sample is still text
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return "random bytes"
    if text.lstrip().lower().startswith(("<!doctype html", "<html")):
        return "an HTML page (a download that returned a web page?)"
    if all(c.isprintable() or c in "\t\r\n" for c in text):
        return "a text file"
    return "random bytes"


def require_checkpoint_file(path: Path) -> None:
    """CheckpointError, in one line, unless `path` is a file that begins as a PyTorch
    checkpoint (saying what it looks like instead)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    what = describe_non_checkpoint(path)
    if what is not None:
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (it looks like {what})")


def describe_mismatch(found: Mapping[str, Sequence[int]], want: Mapping[str, Sequence[int]]) -> str:
    """'' when `found` (key -> shape) has exactly the keys and shapes of `want`, else one line
    naming the first few keys that are missing, unexpected or mis-shaped."""
    missing = [k for k in want if k not in found]
    unexpected = [k for k in found if k not in want]
    shaped = [
        f"{k} {tuple(found[k])} instead of {tuple(want[k])}"
        for k in want
        if k in found and tuple(found[k]) != tuple(want[k])
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)):
        if items:
            more = f", ... ({len(items)} in all)" if len(items) > 5 else ""
            parts.append(f"{label}: {', '.join(items[:5])}{more}")
    return "; ".join(parts)
