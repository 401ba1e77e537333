"""Per-modality FAISS indexes: inner product over unit vectors, ids = the store's item ids.

An index is an `IndexIDMap2` over a FAISS index-factory type. It lives in one file, or, for
an IVF index built `on_disk`, in two: the index file (quantizer, codebooks, id map, list
offsets) and an `.ivfdata` file beside it holding the inverted lists, which readers map into
memory instead of loading (`faiss.OnDiskInvertedLists`), so that an index larger than RAM can
be served.
"""

from __future__ import annotations

import ctypes
import os
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

import faiss
import numpy as np

from xsearch.errors import ParameterError, UsageError

DEFAULT_FACTORY = "Flat"
# Refined indexes ("...,RFlat") re-rank k x this many candidates exactly. FAISS's default, 1,
# only reorders the base index's own top k; with IVF4096,PQ64 over 1M clustered 1024-d vectors
# recall@10 is 0.47 at 1, 0.93 at 8 and 0.97 at 16 (nprobe 8), for ~1 ms a query.
REFINE_K_FACTOR = 16.0
MIN_TRAIN = 100_000  # the default training sample: at least this many vectors...
TRAIN_PER_LIST = 40  # ...and this many per IVF list (FAISS warns under 39, samples over 256)


def new_index(dim: int, factory: str = DEFAULT_FACTORY) -> faiss.Index:
    """An empty `IndexIDMap2` over `factory` (a FAISS index-factory string) with inner product."""
    try:
        inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else "unknown error"
        raise UsageError(f"bad index factory {factory!r}: {first}") from None
    for part in (inner, _base(inner)):
        if hasattr(part, "do_polysemous_training"):
            # PQ codes reordered for Hamming-distance filtering, which searches here never
            # use, at a high price: IVF32,PQ16 on 2,000 64-d vectors trains in 73 s with it,
            # 1.3 s without.
            part.do_polysemous_training = False
    if isinstance(faiss.downcast_index(inner), faiss.IndexRefine):
        faiss.downcast_index(inner).k_factor = REFINE_K_FACTOR
    return faiss.IndexIDMap2(inner)


def empty_like(index: faiss.Index) -> faiss.Index:
    """An empty index of the type, parameters and training of `index` (an exact one is
    simply made anew), its lists in memory, without copying what `index` holds."""
    inner = inner_of(index)
    if isinstance(inner, faiss.IndexFlat):
        return new_index(index.d)
    ivf = ivf_of(index)
    if ivf is None:  # HNSW and refined types: copied, then emptied
        copy = faiss.clone_index(index)
        copy.reset()
        return copy
    lists = ivf.invlists  # swapped for empty ones while the rest is copied
    ivf.own_invlists = False
    _replace_lists(ivf, faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size))
    try:
        copy = faiss.clone_index(index)
    finally:
        ivf.replace_invlists(lists, True)
    copy.reset()
    return copy


def flat_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray] | None:
    """(ids, vectors) of an exact inner-product index in position order, the vectors viewed
    without a copy (they live as long as `index`); None for other index types."""
    outer = faiss.downcast_index(index)
    inner = faiss.downcast_index(outer.index)
    if not isinstance(inner, faiss.IndexFlat) or inner.metric_type != faiss.METRIC_INNER_PRODUCT:
        return None
    n, d = inner.ntotal, inner.d
    vectors = faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d)  # keep `index` alive
    return faiss.vector_to_array(outer.id_map), vectors


def _base(index: faiss.Index) -> faiss.Index:
    """The base index under a refinement ("...,RFlat"), else the index itself."""
    index = faiss.downcast_index(index)
    return faiss.downcast_index(index.base_index) if isinstance(index, faiss.IndexRefine) else index


def build(ids: np.ndarray, vectors: np.ndarray, factory: str = DEFAULT_FACTORY) -> faiss.Index:
    """An index holding `vectors` under `ids`, trained on them first when the type needs it."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = new_index(vectors.shape[1], factory)
    if not index.is_trained:
        train(index, vectors)
    if len(ids):
        index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
    return index


def update(
    index: faiss.Index, remove: np.ndarray, ids: np.ndarray, vectors: np.ndarray
) -> faiss.Index:
    """Remove the ids in `remove`, then add `vectors` under `ids` (in place)."""
    lists = on_disk_lists(index)
    if lists is not None and lists.read_only:  # FAISS would abort the process, not raise
        raise ValueError("a published on-disk index is read-only: build a new segment instead")
    with quiet_c_stdout() if lists is not None else nullcontext():
        if len(remove):
            _remove(index, np.ascontiguousarray(remove, dtype=np.int64))
        if len(ids):
            add(index, ids, vectors)
    return index


def _remove(index: faiss.Index, remove: np.ndarray) -> None:
    """Remove the items `remove`. The id map holds the item id of each position of the index
    inside it and assumes removals renumber positions, which flat indexes do and IVF indexes
    do not (their lists keep the positions they were given): those get their positions
    renumbered here, so that map, lists and later additions stay consistent."""
    ivf = ivf_of(index)
    if ivf is None:
        index.remove_ids(remove)
        return
    outer = faiss.downcast_index(index)
    id_map = faiss.vector_to_array(outer.id_map)
    gone = np.isin(id_map, remove)
    if not gone.any():
        return
    ivf.remove_ids(faiss.IDSelectorBatch(np.flatnonzero(gone).astype(np.int64)))
    renumber = np.cumsum(~gone) - 1  # old position -> new position
    lists = ivf.invlists
    for i in range(ivf.nlist):
        if n := lists.list_size(i):
            positions = faiss.rev_swig_ptr(lists.get_ids(i), n)  # the list's own memory
            positions[:] = renumber[positions]
    faiss.copy_array_to_vector(id_map[~gone], outer.id_map)
    outer.ntotal = ivf.ntotal
    outer.construct_rev_map()


def add(index: faiss.Index, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Add `vectors` under `ids`. Into on-disk lists the codes are computed in parallel and
    appended by one thread: growing a list may remap the file, which FAISS's own parallel add
    does not guard against."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if on_disk_lists(index) is None:
        index.add_with_ids(vectors, ids)
        return
    codes = ivf_of(index).sa_encode(vectors)
    with quiet_c_stdout():  # OnDiskInvertedLists prints each time it grows its file
        index.add_sa_codes(codes, ids)


# --- types -----------------------------------------------------------------------------------


def inner_of(index: faiss.Index) -> faiss.Index:
    """The index inside the `IndexIDMap2`."""
    return faiss.downcast_index(faiss.downcast_index(index).index)


def ivf_of(index: faiss.Index):
    """The IVF index directly inside the id map (not under a refinement), or None."""
    inner = inner_of(index)
    return inner if isinstance(inner, faiss.IndexIVF) else None


def nlist_of(index: faiss.Index) -> int | None:
    """The number of IVF lists anywhere in the index (refined or not), or None."""
    try:
        return faiss.extract_index_ivf(faiss.downcast_index(index).index).nlist
    except RuntimeError:
        return None


def check_on_disk(index: faiss.Index, factory: str) -> None:
    """UsageError unless the type can keep its inverted lists on disk: a plain IVF (Flat, SQ,
    PQ codes), not a fast-scan one (its lists are packed blocks) nor a refined one (its
    refinement vectors would stay in memory)."""
    ivf = ivf_of(index)
    if ivf is None or isinstance(ivf, faiss.IndexIVFFastScan):
        raise ParameterError(
            "on_disk",
            f"needs an IVF index with plain codes (e.g. IVF4096,PQ64 or IVF4096,SQ8), "
            f"not {factory!r}",
        )


def train(index: faiss.Index, sample: np.ndarray) -> None:
    """Train `index` on `sample`; too few vectors for its clusters is a one-line UsageError."""
    try:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    except RuntimeError as e:
        if "Number of training points" not in str(e):
            raise
        wanted = str(e).rsplit("number of clusters (", 1)[-1].rstrip(")").strip()
        raise UsageError(
            f"{len(sample):,} vectors are too few to train this index (it has {wanted} "
            "clusters to fit); use fewer IVF lists or PQ bits, or the exact index (Flat)"
        ) from None


def train_size(index: faiss.Index, n: int, requested: int | None = None) -> int:
    """How many vectors to train `index` on, out of `n`: `requested`, else at least
    `MIN_TRAIN` and `TRAIN_PER_LIST` per IVF list; 0 when it needs no training."""
    if index.is_trained or n == 0:
        return 0
    if requested is not None:
        return min(n, requested)
    return min(n, max(MIN_TRAIN, TRAIN_PER_LIST * (nlist_of(index) or 0)))


def search_parameters(
    index,
    allowed: np.ndarray | None = None,
    excluded: np.ndarray | None = None,
    nprobe: int | None = None,
    ef: int | None = None,
    k_factor: float | None = None,
):
    """FAISS search parameters for an `IndexIDMap2` over a flat, IVF, HNSW or refined
    ("...,RFlat") index: an id filter, and the nprobe / efSearch of approximate types.

    `IndexRefine` accepts only `IndexRefineSearchParameters` and hands just their
    `base_index_params` to its base index, so nprobe/efSearch go there. `IndexIDMap2`
    translates only the outer parameters' id filter, so for a refined index the filter is
    translated to internal positions here and put on the base parameters. `excluded`: ids
    never returned (a segment's deleted items)."""
    outer = faiss.downcast_index(index)
    inner = faiss.downcast_index(outer.index)
    refine = inner if isinstance(inner, faiss.IndexRefine) else None
    base = faiss.downcast_index(refine.base_index) if refine is not None else inner
    if isinstance(base, faiss.IndexIVF):
        params = faiss.SearchParametersIVF(nprobe=nprobe or base.nprobe)
    elif isinstance(base, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=ef or base.hnsw.efSearch)
    else:
        params = faiss.SearchParameters()
    keep = []  # SWIG holds no references: the parameters keep their parts alive
    selector = None
    if allowed is not None:
        selector = faiss.IDSelectorBatch(allowed)
        keep.append(selector)
    if excluded is not None:
        keep.append(faiss.IDSelectorBatch(excluded))
        keep.append(faiss.IDSelectorNot(keep[-1]))
        if selector is not None:
            keep.append(faiss.IDSelectorAnd(selector, keep[-1]))
        selector = keep[-1]
    if selector is not None:
        if refine is not None:
            selector = faiss.IDSelectorTranslated(outer.id_map, selector)
            keep.append(selector)
        params.sel = selector
    if refine is not None:
        keep.append(params)
        params = faiss.IndexRefineSearchParameters(
            k_factor=k_factor or refine.k_factor, base_index_params=params
        )
    params._keep = keep
    return params


# --- on-disk inverted lists ------------------------------------------------------------------


def on_disk_lists(index: faiss.Index):
    """The `OnDiskInvertedLists` of an IVF index whose lists live in a file, or None."""
    ivf = ivf_of(index)
    if ivf is None:
        return None
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    return lists if isinstance(lists, faiss.OnDiskInvertedLists) else None


def ivfdata_file(index: faiss.Index) -> Path | None:
    """The file holding the inverted lists of an on-disk index, or None."""
    lists = on_disk_lists(index)
    return Path(lists.filename) if lists is not None else None


def _growing(path: Path) -> Path:
    return path.with_name(path.name + ".grow")


def start_on_disk(index: faiss.Index, path: Path) -> None:
    """Give the (trained, empty) IVF index writable on-disk lists, to be filled with `add` and
    packed into `path` by `finish_on_disk`. Until then they grow in a file beside `path`."""
    ivf = ivf_of(index)
    lists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(_growing(path)))
    _replace_lists(ivf, lists)


def finish_on_disk(index: faiss.Index, path: Path) -> None:
    """Pack the lists grown since `start_on_disk` into `path`, one list after the other with
    no free space, and delete the growing file."""
    growing = ivfdata_file(index)
    if growing is None or growing == path:
        return
    _copy_lists(index, path)
    growing.unlink()


def _copy_lists(index: faiss.Index, path: Path) -> None:
    """Pack the lists into `path`. Only for reading afterwards: FAISS's packing leaves its
    record of free space saying the whole file is free, so adding would overwrite lists."""
    ivf = ivf_of(index)
    packed = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(path))
    with quiet_c_stdout():
        packed.merge_from_1(ivf.invlists, False)
    _replace_lists(ivf, packed)


def _replace_lists(ivf, lists) -> None:
    lists.this.disown()  # the index owns (and frees) them from now on
    ivf.replace_invlists(lists, True)


@contextmanager
def quiet_c_stdout():
    """Silence what FAISS's C++ code prints on stdout ("resizing ... bytes") for the block:
    stdout is the output of `--json` commands."""
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    libc.fflush(None)
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


# --- files -----------------------------------------------------------------------------------


def write(index: faiss.Index, path: Path) -> None:
    """Write the index to `path` and fsync it, and its on-disk lists too (the caller publishes
    both). Written by FAISS straight to the file: no serialised copy in memory."""
    faiss.write_index(index, os.fspath(path))
    files = [path]
    if (lists := ivfdata_file(index)) is not None:
        files.append(lists)
    for name in files:
        with open(name, "rb+") as f:
            os.fsync(f.fileno())


def read(path: Path, ivfdata: Path | None = None) -> faiss.Index:
    """Load the index file `path`; an on-disk index maps its lists from `ivfdata` (read-only:
    the pages are the kernel's cache, not this process's memory)."""
    # IVF-PQ's precomputed tables serve the L2 metric only: an inner-product index has none,
    # but FAISS would still check their would-be size against its deserialisation limits.
    flags = faiss.IO_FLAG_SKIP_PRECOMPUTE_TABLE
    if ivfdata is None:
        return faiss.read_index(os.fspath(path), flags)
    flags |= faiss.IO_FLAG_SKIP_IVF_DATA | faiss.IO_FLAG_READ_ONLY
    index = faiss.read_index(os.fspath(path), flags)
    lists = on_disk_lists(index)
    if lists is None:
        raise ValueError(f"{path} has no on-disk inverted lists")
    lists.filename = os.fspath(ivfdata)  # FAISS recorded where the writer put it
    lists.do_mmap()
    return index


def to_bytes(index: faiss.Index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def from_bytes(data: bytes) -> faiss.Index:
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
