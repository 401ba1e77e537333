"""The store's tables: their Arrow schemas and Parquet reading and writing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from xsearch.models.spec import MODALITIES  # noqa: F401  (the modalities that exist)

ASSETS = pa.schema(
    [
        ("asset_id", pa.int64()),
        ("path", pa.string()),  # absolute, as found under the roots the user gave
        ("content_hash", pa.string()),  # blake2b of the file's bytes: renames keep it
        ("kind", pa.string()),  # video, audio, image, text
        ("bytes", pa.int64()),
        ("mtime", pa.float64()),
        ("duration", pa.float64()),  # seconds, null for images and texts
        ("labels", pa.list_(pa.string())),
    ]
)

ITEMS = pa.schema(
    [
        ("item_id", pa.int64()),  # the FAISS id
        ("asset_id", pa.int64()),
        ("modality", pa.string()),  # image, audio, text
        ("start", pa.float64()),  # seconds into the asset (audio windows, video frames)
        ("end", pa.float64()),
        ("text", pa.string()),  # the text of a text item
    ]
)

FAILURES = pa.schema(
    [
        ("path", pa.string()),
        ("reason", pa.string()),
        ("bytes", pa.int64()),  # size and mtime when it failed: unchanged files are not retried
        ("mtime", pa.float64()),
    ]
)


def embeddings_schema(dim: int) -> pa.Schema:
    return pa.schema([("item_id", pa.int64()), ("embedding", pa.list_(pa.float32(), dim))])


def embeddings_table(ids: np.ndarray, vectors: np.ndarray) -> pa.Table:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    return pa.table(
        [pa.array(ids, type=pa.int64()), column], schema=embeddings_schema(vectors.shape[1])
    )


def embeddings_arrays(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(ids [n] int64, vectors [n, dim] float32) without copying the vectors twice."""
    ids = table.column("item_id").to_numpy()
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    vectors = column.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    return ids, vectors


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write and fsync (the caller publishes it with the manifest)."""
    pq.write_table(table, path, compression="zstd")
    fsync_file(path)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def read_parquet(path: Path, schema: pa.Schema | None = None) -> pa.Table:
    table = pq.read_table(path)
    return table.cast(schema) if schema is not None else table
