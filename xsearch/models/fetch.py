"""Downloading the official checkpoints and tokenizer files: resumable, verified, atomic.

Bytes go to `<file>.part`. An interrupted download keeps the part, and the next run asks the
server for the rest (`Range: bytes=N-`). Only a part that passes verification is renamed to
its final name (`os.replace`, atomic), so a file at the final path is always a complete,
loadable checkpoint. A part that fails verification is deleted, so the next run starts over.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from xsearch import __version__
from xsearch.errors import CheckpointError, DownloadError
from xsearch.models.registry import DEFAULT_MODEL, Release, family_of, model_card
from xsearch.models.weights import sha256_file, sidecar_path, weights_dir

PART_SUFFIX = ".part"
# What a download reports its progress to: a function of (bytes so far, total or None), or
# None. Drawing it is the shells' job (the command line shows a bar).
ProgressArg = Callable[[int, int | None], None] | None
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save has written zip archives since PyTorch 1.6


@dataclass(frozen=True)
class FetchResult:
    """A verified checkpoint on disk, and how it compares with the official release."""

    path: Path
    sha256: str
    size: int  # bytes
    matches_release: bool  # sha256 equals the digest recorded for the official release
    downloaded: bool  # False when a valid file was already there
    files: tuple[Path, ...] = ()  # the tokenizer files installed beside it


def part_path(dest: Path) -> Path:
    """Where `download` writes the bytes for `dest`."""
    return dest.with_name(dest.name + PART_SUFFIX)


# --- downloading ---------------------------------------------------------------------------


def download(
    url: str,
    dest: Path,
    *,
    expected_size: int | None = None,
    progress: ProgressArg = None,
    timeout: float = 15.0,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download `url` to `dest`'s part file, resuming a previous part, and return its path.

    The returned part holds every byte the server announced, fsynced; checking its content
    and renaming it to `dest` is the caller's job. `timeout` bounds the connection and each
    read, so an unreachable or silent server fails instead of hanging. On failure the part
    is kept for the next attempt to resume, and DownloadError names the URL and the reason.
    """
    part = part_path(dest)
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        response, offset, total = _open(url, part, timeout, expected_size)
        if expected_size is not None and total is not None and total != expected_size:
            if response is not None:
                response.close()
            raise DownloadError(f"{url}: the server offers {total} bytes, expected {expected_size}")
        if response is None:  # the part was already complete
            return part
        with response, _progress_bar(progress, total, offset) as advance:
            received = _stream(response, part, offset, chunk_size, advance)
    except urllib.error.HTTPError as err:
        raise _failed(url, f"HTTP {err.code} {err.reason}", part) from None
    except urllib.error.URLError as err:
        raise _failed(url, _reason(err.reason), part) from None
    except (OSError, http.client.HTTPException) as err:
        raise _failed(url, _reason(err), part) from None
    if total is not None and offset + received != total:
        reason = f"the connection closed after {offset + received} of {total} bytes"
        raise _failed(url, reason, part)
    return part


def _failed(url: str, reason: str, part: Path) -> DownloadError:
    """The one-line error for a failed transfer, saying whether a resumable part is kept."""
    kept = part.stat().st_size if part.exists() else 0
    if kept:
        return DownloadError(f"{url}: {reason}; {kept} bytes kept in {part}, run again to resume")
    return DownloadError(f"{url}: {reason}")


def _request(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    """GET `url`, from byte `offset` on when it is not 0. Redirects are followed."""
    headers = {"User-Agent": f"xsearch/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"  # urllib keeps it across redirects
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _open(
    url: str, part: Path, timeout: float, expected_size: int | None
) -> tuple[http.client.HTTPResponse | None, int, int | None]:
    """(response, offset it starts at, total size or None); response None: part complete.

    206 resumes the part; 200 (a server that ignores Range) starts over; 416 means the part
    already has every byte, or, when it is longer than the file, that it must start over.
    """
    for _attempt in range(2):
        offset = part.stat().st_size if part.exists() else 0
        try:
            response = _request(url, offset, timeout)
        except urllib.error.HTTPError as err:
            if err.code != 416 or not offset:
                raise
            total = _content_range(err.headers.get("Content-Range"))[1] or expected_size
            err.close()
            if total == offset:
                return None, offset, total
        else:
            if response.status != 206:
                return response, 0, _int(response.headers.get("Content-Length"))
            start, total = _content_range(response.headers.get("Content-Range"))
            if start == offset:
                length = _int(response.headers.get("Content-Length"))
                if total is None and length is not None:
                    total = offset + length
                return response, offset, total
            response.close()
        part.unlink(missing_ok=True)  # the server disagrees with the part: start over
    raise DownloadError(f"{url}: the server answered a download from byte 0 with a partial range")


def _stream(
    response: http.client.HTTPResponse,
    part: Path,
    offset: int,
    chunk_size: int,
    advance: Callable[[int], None],
) -> int:
    """Append (or, from offset 0, write) the body to `part`; the number of bytes written.

    The part is fsynced even when the transfer breaks, so a resume starts from bytes that
    are really on disk.
    """
    received = 0
    with open(part, "ab" if offset else "wb") as out:
        try:
            while chunk := response.read(chunk_size):
                out.write(chunk)
                received += len(chunk)
                advance(len(chunk))
        finally:
            out.flush()
            os.fsync(out.fileno())
    return received


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a `Content-Range` header: `bytes 0-9/10`, `bytes */10`."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not match:
        return None, None
    return _int(match[1]), _int(match[2])


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _reason(err: object) -> str:
    """One line for a network error: 'timed out', 'Connection refused', ..."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


@contextmanager
def _progress_bar(
    progress: ProgressArg, total: int | None, completed: int
) -> Iterator[Callable[[int], None]]:
    """A function to report each chunk's bytes to: it tells `progress` the bytes so far and
    the total, or nothing when there is no `progress`."""
    if progress is None:
        yield lambda n: None
        return
    done = completed
    progress(done, total)

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress(done, total)

    yield advance


# --- verifying -----------------------------------------------------------------------------


def verify_checkpoint(
    path: Path, expected_size: int | None = None, model: str = DEFAULT_MODEL
) -> None:
    """Raise CheckpointError unless `path` is a complete, intact checkpoint of `model`.

    Checks the size (when known), the zip archive's CRC-32s, then that the tensors load and
    fit the model's architecture. The CRCs matter: torch.load does not check them, so bytes
    flipped inside a tensor would otherwise load without complaint.
    """
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise CheckpointError(f"{path.name} has {size} bytes, expected {expected_size}")
    _check_zip(path)
    if family_of(model) == "audioclip":
        from xsearch.models.checkpoint import config_for, read_state_dict

        config_for(read_state_dict(path), None if model == DEFAULT_MODEL else model)
    elif family_of(model) == "mmv":
        from xsearch.models.mmv_checkpoint import load_mmv_state

        load_mmv_state(path, model)
    elif family_of(model) == "cav-mae":
        from xsearch.models.cav_mae import cav_mae_config
        from xsearch.models.cav_mae_checkpoint import load_cav_mae_state

        load_cav_mae_state(path, cav_mae_config(model))
    else:
        from xsearch.models.clap_checkpoint import load_clap_state
        from xsearch.models.clap_config import clap_config

        load_clap_state(path, clap_config(model))


def verify_tokenizer_file(path: Path, release: Release) -> None:
    """Raise DownloadError unless `path` is the tokenizer file `release` names: its recorded
    size and sha256 when known, and readable as what it is (a JSON vocabulary or a BPE
    merges list), so an error page saved under its name is caught."""
    data, name = path.read_bytes(), release.filename
    if release.size is not None and len(data) != release.size:
        raise DownloadError(f"{name} has {len(data)} bytes, expected {release.size}")
    if release.sha256 is not None and hashlib.sha256(data).hexdigest() != release.sha256:
        raise DownloadError(f"{name} does not have the published sha256")
    try:
        text = data.decode("utf-8")
        if release.filename.endswith(".json"):
            if not isinstance(json.loads(text), dict):
                raise ValueError("not a JSON object")
        else:  # BPE merges: a "#version" header, then one pair of symbols per line
            lines = text.splitlines()
            if not lines or not lines[0].startswith("#version"):
                raise ValueError("no #version header of a BPE merges list")
            if any(len(line.split()) != 2 for line in lines[1:] if line.strip()):
                raise ValueError("not a list of BPE merges")
    except ValueError as err:
        raise DownloadError(f"{name} is not a tokenizer file ({err})") from None


def _check_zip(path: Path) -> None:
    """For a zip-format checkpoint, every member's CRC-32; older pickle files pass as they are."""
    with open(path, "rb") as f:
        if f.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
            return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except Exception as err:  # zipfile raises several types for a damaged archive
        raise CheckpointError(f"{path.name} is a damaged zip archive ({_reason(err)})") from None
    if bad is not None:
        raise CheckpointError(f"{path.name} is corrupted: bad CRC-32 for {bad}")


def write_sidecar(path: Path, sha256: str) -> Path:
    """Record `sha256` next to `path` as `<file>.sha256`, in `sha256sum -c` format."""
    sidecar = sidecar_path(path)
    sidecar.write_text(f"{sha256}  {path.name}\n", encoding="utf-8")
    return sidecar


# --- the command's entry point -------------------------------------------------------------


def release_for(variant: str | None = None, model: str = DEFAULT_MODEL) -> Release:
    """The published checkpoint `variant` of `model` (default: its first); UsageError
    listing the known ones otherwise."""
    return model_card(model).release(variant)


def fetch_weights(
    variant: str | None = None,
    dest_dir: Path | None = None,
    *,
    model: str = DEFAULT_MODEL,
    url: str | None = None,
    files_url: str | None = None,
    expected_size: int | None = None,
    progress: ProgressArg = None,
    timeout: float = 15.0,
) -> FetchResult:
    """Download, verify and install the official checkpoint `variant` of `model` (and the
    files its tokenizer needs, beside it) into `dest_dir` (default: the model's folder in
    the weights cache), unless valid copies are already there.

    `url` replaces the checkpoint's URL (a mirror, a test server), `files_url` the folder
    URL the tokenizer files are fetched from (`<files_url>/<filename>`). The official URL's
    file must have the release's size when it is recorded; for another URL the size is
    checked only when `expected_size` is given, since a mirror may serve a re-saved but
    equally valid checkpoint. Every checkpoint must pass `verify_checkpoint`. A sha256 that
    differs from the release's recorded digest is reported in `matches_release`, not raised.
    """
    card = model_card(model)
    release = card.release(variant)
    folder = Path(dest_dir).expanduser() if dest_dir is not None else weights_dir(model)
    dest = folder / release.installed  # a pickled release is kept converted (MMV)
    if url is None and expected_size is None:
        expected_size = release.size
    source = url or release.url

    files = [_fetch_file(t, folder, files_url, timeout) for t in card.tokenizer]
    if dest.is_file():
        try:
            verify_checkpoint(dest, model=model)
        except CheckpointError:
            pass  # not usable: download a verified copy, which then replaces it
        else:
            return _installed(dest, release, files, downloaded=False)

    dest.parent.mkdir(parents=True, exist_ok=True)
    published = folder / release.filename
    part = download(
        source, published, expected_size=expected_size, progress=progress, timeout=timeout
    )
    try:
        if published != dest:
            return _converted(part, dest, release, model, files)
        verify_checkpoint(part, expected_size, model=model)
    except CheckpointError as err:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{source}: the download failed verification: {err}; "
            "the partial file was removed, run the command again"
        ) from None
    os.replace(part, dest)
    return _installed(dest, release, files, downloaded=True)


def _converted(
    part: Path, dest: Path, release: Release, model: str, files: list[Path]
) -> FetchResult:
    """Install the downloaded pickled release `part` converted into `dest` (see
    `mmv_checkpoint.convert_mmv`); the download is removed once converted."""
    from xsearch.models.mmv_checkpoint import convert_mmv

    published_digest = sha256_file(part)
    convert_mmv(part, model, dest)
    part.unlink()
    try:
        verify_checkpoint(dest, model=model)
    except CheckpointError:
        dest.unlink(missing_ok=True)
        raise
    result = _installed(dest, release, files, downloaded=True)
    return replace(result, matches_release=published_digest == release.sha256)


def _fetch_file(release: Release, folder: Path, files_url: str | None, timeout: float) -> Path:
    """A small published file (a tokenizer's vocabulary) in `folder`: kept when it is there
    and valid, else downloaded, verified and moved in atomically."""
    dest = folder / release.filename
    if dest.is_file():
        try:
            verify_tokenizer_file(dest, release)
            return dest
        except DownloadError:
            pass
    source = f"{files_url.rstrip('/')}/{release.filename}" if files_url else release.url
    folder.mkdir(parents=True, exist_ok=True)
    try:
        part = download(source, dest, expected_size=release.size, timeout=timeout)
        verify_tokenizer_file(part, release)
    except DownloadError as err:
        part_path(dest).unlink(missing_ok=True)  # small: start over rather than resume
        raise DownloadError(
            f"{err}; or put {release.filename} (from {release.url}) in {folder} yourself"
        ) from None
    os.replace(part, dest)
    return dest


def _installed(dest: Path, release: Release, files: list[Path], *, downloaded: bool) -> FetchResult:
    """Hash a verified file, record the hash in its sidecar, and describe it."""
    digest = sha256_file(dest)
    write_sidecar(dest, digest)
    return FetchResult(
        path=dest,
        sha256=digest,
        size=dest.stat().st_size,
        matches_release=digest == release.sha256,
        downloaded=downloaded,
        files=tuple(files),
    )
