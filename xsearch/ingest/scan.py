"""Find the media files to ingest, and the texts and labels that come with them.

Finding is deterministic (sorted, depth-first) so that two runs over the same folders see the
files in the same order, and it never leaves the folders it was given: a symlink that points out
of every root is skipped, so ingesting a folder cannot wander into the rest of the disk.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

from xsearch.errors import MediaError, UsageError
from xsearch.media.kinds import extension, kind_of

MEDIA_KINDS = frozenset({"audio", "image", "video"})

# Sidecars are short descriptions; anything bigger is a mistake, not a caption.
MAX_SIDECAR_BYTES = 1 << 20

OnError = Callable[[Path, OSError], None]
OnUnsupported = Callable[[Path], None]


def find_files(
    roots: Iterable[str | os.PathLike[str]],
    follow_symlinks_within_roots: bool = True,
    *,
    on_error: OnError | None = None,
    on_unsupported: OnUnsupported | None = None,
) -> Iterator[Path]:
    """Yield the audio, image and video files under `roots`, as absolute resolved paths.

    Each folder yields its own files sorted by name, then its subfolders in name order (depth
    first). A root that is a file is always taken (but a text file), whatever its extension:
    the decoders judge it by its content. Hidden entries (names starting with '.') under a
    root are skipped, as are text files (they are only read as sidecars), non-regular files
    (FIFOs, devices) and files already yielded; a file of no known media type found in a
    folder is passed to `on_unsupported` (`summarize_unsupported` says it in one line).

    Symlinks are followed only when `follow_symlinks_within_roots` is true and their target lies
    inside one of the roots; they are followed after the plain walk of every root, so what they
    reach comes last (mostly nothing new: in-root targets are walked anyway, unless hidden).
    Every folder is walked once, so symlink loops end. Raises UsageError for a root that does
    not exist; an entry that cannot be read (a folder without permission, a self-referencing
    symlink) is passed to `on_error` and skipped.
    """
    resolved: list[Path] = []
    for root in map(Path, roots):
        if not root.exists():
            raise UsageError(f"{root}: no such file or directory")
        resolved.append(root.resolve())
    folder_roots = [root for root in resolved if root.is_dir()]
    seen_files: set[Path] = set()
    seen_dirs: set[Path] = set()
    links: list[Path] = []

    def report(path: Path, exc: BaseException) -> None:
        if on_error is not None:
            on_error(path, exc if isinstance(exc, OSError) else OSError(str(exc)))

    def take(path: Path, named: bool = False) -> Iterator[Path]:
        if path in seen_files:
            return
        kind = kind_of(path)
        if kind in MEDIA_KINDS or (named and kind != "text"):
            seen_files.add(path)
            yield path
        elif kind is None and on_unsupported is not None:
            seen_files.add(path)  # reported once, whichever way it was reached
            on_unsupported(path)

    def walk(top: Path) -> Iterator[Path]:
        stack = [top]
        while stack:
            folder = stack.pop()
            if folder in seen_dirs:
                continue
            seen_dirs.add(folder)
            try:
                with os.scandir(folder) as listing:
                    entries = sorted(listing, key=lambda entry: entry.name)
            except OSError as exc:
                report(folder, exc)
                continue
            subfolders = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path = folder / entry.name
                try:
                    if entry.is_symlink():
                        if follow_symlinks_within_roots:
                            links.append(path)
                    elif entry.is_dir(follow_symlinks=False):
                        subfolders.append(path)
                    elif entry.is_file(follow_symlinks=False):
                        yield from take(path)
                except OSError as exc:  # vanished mid-walk
                    report(path, exc)
            stack.extend(reversed(subfolders))

    for root in resolved:
        if root.is_dir():
            yield from walk(root)
        elif root.is_file():
            yield from take(root, named=True)
        else:  # a FIFO or a device named directly: reading it could block for ever
            report(root, OSError(f"{root}: not a regular file"))

    while links:
        pending, links = links, []
        for link in pending:
            try:
                target = link.resolve()
                if not any(target.is_relative_to(root) for root in folder_roots):
                    continue  # never out of the roots
                if target.is_dir():
                    yield from walk(target)
                elif target.is_file():  # also false for a dangling link
                    yield from take(target)
            except (OSError, RuntimeError) as exc:
                # A symlink loop: RuntimeError from resolve() before Python 3.13, ELOOP after.
                report(link, exc)


def summarize_unsupported(paths: Iterable[str | os.PathLike[str]]) -> str:
    """One line about files skipped as of no media type, by extension, most common first:
    "3 files of unsupported types (.svg: 2, .xyz: 1)"; '' when there are none."""
    counts = Counter(f".{extension(p)}" if extension(p) else "no extension" for p in paths)
    total = sum(counts.values())
    if not total:
        return ""
    kinds = ", ".join(f"{ext}: {n}" for ext, n in sorted(counts.items(), key=_most_first))
    files = "1 file of an unsupported type" if total == 1 else f"{total} files of unsupported types"
    return f"{files} ({kinds})"


def _most_first(entry: tuple[str, int]) -> tuple[int, str]:
    return -entry[1], entry[0]


def read_file_list(stream: TextIO) -> list[Path]:
    """Paths from a newline-separated list (as `find ... | xsearch ingest -` gives), in order.

    Blank lines are skipped; other lines are taken verbatim (only the line ending is removed),
    since file names may start or end with spaces.
    """
    paths = []
    for line in stream:
        name = line.rstrip("\r\n")
        if name.strip():
            paths.append(Path(name))
    return paths


def sidecar_texts(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """(texts, labels) from the sidecars next to `path` sharing its stem: `stem.txt`, `stem.json`.

    `stem.txt` gives one text, the whole file stripped (the text tower truncates long ones).
    `stem.json` is an object with `text` (a string or a list of strings) and/or `labels` (a list
    of strings, or one comma-separated string); other keys are ignored. Texts from the txt come
    first. Raises MediaError naming the sidecar when it cannot be read or is not such JSON.
    """
    media = Path(path)
    texts: list[str] = []
    labels: list[str] = []
    txt = media.with_suffix(".txt")
    if txt != media and txt.is_file():
        text = _read_sidecar(txt).strip()
        if text:
            texts.append(text)
    sidecar = media.with_suffix(".json")
    if sidecar != media and sidecar.is_file():
        try:
            data = json.loads(_read_sidecar(sidecar))
        except json.JSONDecodeError as exc:
            raise MediaError(f"{sidecar}: bad JSON sidecar: {exc}") from exc
        if not isinstance(data, dict):
            raise MediaError(f"{sidecar}: bad JSON sidecar: expected an object with text/labels")
        texts.extend(_strings(data.get("text"), sidecar, "text", split=False))
        labels.extend(_strings(data.get("labels"), sidecar, "labels", split=True))
    return texts, labels


def folder_label(path: str | os.PathLike[str]) -> str:
    """The name of the folder holding `path`: its label under `--labels folder`."""
    return Path(path).parent.name


def _read_sidecar(path: Path) -> str:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise MediaError(f"{path}: cannot read sidecar: {exc.strerror or exc}") from exc
    if len(data) > MAX_SIDECAR_BYTES:
        raise MediaError(f"{path}: sidecar larger than {MAX_SIDECAR_BYTES >> 20} MiB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MediaError(f"{path}: sidecar is not UTF-8 text") from exc


def _strings(value: object, sidecar: Path, key: str, *, split: bool) -> list[str]:
    """A JSON string or list of strings as stripped non-empty strings (commas split if `split`)."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(",") if split else [value]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = value
    else:
        raise MediaError(
            f"{sidecar}: bad JSON sidecar: {key!r} must be a string or a list of strings"
        )
    return [item.strip() for item in items if item.strip()]
