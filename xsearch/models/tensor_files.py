"""Tensor files in the safetensors format, mapped into memory without a copy.

Writing uses the `safetensors` library. Reading maps the file with NumPy instead: the format
is a length-prefixed JSON header followed by raw little-endian arrays, so each tensor is a
view of one mapping, and a tower's hundreds of megabytes load in microseconds and are paged
in as they are used. The mapping is copy-on-write: writing to an array never reaches the
file. Files are only ever replaced whole (written aside, then renamed), never changed in
place, so a mapping stays valid for as long as it lives.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from xsearch.errors import XSearchError

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64,
           "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_}  # fmt: skip
_MAX_HEADER = 100 << 20  # a header larger than this is not one we wrote


class TensorFileError(XSearchError):
    """A tensor file that is truncated, malformed or of an unknown type."""


def write_tensors(
    path: Path, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> None:
    """Write `arrays` to `path` atomically: aside, flushed to disk, then renamed over it."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        contiguous = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        save_file(contiguous, str(temp), metadata=dict(metadata or {}))
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def map_tensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays of a tensor file as views of one copy-on-write mapping, and its metadata."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise TensorFileError(f"{path}: truncated tensor file")
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, _MAX_HEADER):
            raise TensorFileError(f"{path}: bad tensor file header")
        try:
            header = json.loads(f.read(length))
        except ValueError:
            raise TensorFileError(f"{path}: bad tensor file header") from None
    metadata = header.pop("__metadata__", None) or {}
    data_size = size - 8 - length
    buffer = np.memmap(path, dtype=np.uint8, mode="c", offset=8 + length) if data_size else None
    arrays = {}
    for name, entry in header.items():
        dtype = _DTYPES.get(entry.get("dtype"))
        start, end = entry.get("data_offsets", (0, -1))
        shape = tuple(entry.get("shape", ()))
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype or np.uint8).itemsize
        if dtype is None or end - start != nbytes or not 0 <= start <= end <= data_size:
            raise TensorFileError(f"{path}: tensor {name!r} does not fit the file")
        raw = buffer[start:end] if buffer is not None and nbytes else np.empty(0, np.uint8)
        arrays[name] = raw.view(dtype).reshape(shape)
    return arrays, metadata
