"""Where a loaded index is searched: on the CPU, or copied to the GPU(s) with faiss-gpu.

A store keeps its indexes as CPU files; a reader asking for `Placement(gpu=True)` gets each
copied to the GPU when it is loaded: to one GPU, or sharded across all of them (each holds a
part of the vectors; a query goes to every part and the results are merged), optionally with
float16 storage (exact indexes: half the GPU memory, scores to about 1e-3). GPU FAISS runs
flat and IVF indexes (Flat, SQ or PQ codes); HNSW, fast-scan and refined types stay CPU-only.

GPU FAISS does not apply id filters (`SearchParameters.sel`): `search` filters the results
itself, widening the search until enough allowed hits are found. A GPU index may not be
searched from several threads at once: `search` takes turns.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xsearch.errors import ParameterError, UsageError

NO_GPU = (
    "needs faiss-gpu and a CUDA GPU, and {found}; install faiss-gpu "
    "(pip install faiss-gpu-cu12) on a machine with a GPU, or search on the CPU"
)
GPU_MAX_K = 2048  # the most results one GPU search returns (GPU_MAX_SELECTION_K)
_GPU_SEARCH = threading.Lock()  # a GPU index must not be searched from two threads at once


@dataclass(frozen=True)
class Placement:
    """Where a store's indexes are searched (see the module docstring)."""

    gpu: bool = False
    float16: bool = False  # GPU only: float16 storage (flat) / lookup tables (IVF-PQ)
    shard: bool = True  # several GPUs: split the vectors (True) or copy the whole index (False)
    devices: tuple[int, ...] | None = None  # GPU numbers; None: all

    def __post_init__(self) -> None:
        if self.float16 and not self.gpu:
            raise ParameterError("fp16_index", "applies to GPU search only (with gpu)")


CPU = Placement()


def gpu_count() -> int:
    """GPUs faiss can use: 0 with faiss-cpu or without a CUDA device."""
    import faiss

    get = getattr(faiss, "get_num_gpus", None)
    return get() if get is not None else 0


def require_gpu() -> int:
    """The number of GPUs, or UsageError (one line) when there are none to use."""
    import faiss

    if not hasattr(faiss, "GpuMultipleClonerOptions"):
        raise ParameterError("gpu", NO_GPU.format(found="this faiss is a CPU-only build"))
    n = gpu_count()
    if n == 0:
        raise ParameterError("gpu", NO_GPU.format(found="faiss-gpu found no CUDA device"))
    return n


def place(index, placement: Placement = CPU):
    """`index` where `placement` says: as it is for the CPU, else a GPU copy."""
    if index is None or not placement.gpu:
        return index
    return to_gpu(index, placement.float16, placement.shard, placement.devices)


def to_gpu(index, float16: bool = False, shard: bool = True, devices: Sequence[int] | None = None):
    """A GPU copy of the CPU `index` (an `IndexIDMap2`: the id map stays on the CPU, the index
    inside it goes to the GPU): on one GPU, or on several (`devices`, default all), sharded or
    replicated. `devices` may repeat a GPU (shards on one GPU: how tests check sharding)."""
    import faiss

    count = require_gpu()
    devices = list(devices) if devices is not None else list(range(count))
    if not devices or any(not 0 <= d < count for d in devices):
        raise UsageError(f"GPU numbers {devices} out of range: faiss sees {count} GPU(s)")
    _check_gpu_type(index)
    options = faiss.GpuMultipleClonerOptions()
    options.useFloat16 = float16
    options.shard = shard
    resources = [_resources(d) for d in devices]
    try:
        if len(devices) == 1:
            placed = faiss.index_cpu_to_gpu(resources[0], devices[0], index, options)
        else:
            placed = faiss.index_cpu_to_gpu_multiple_py(resources, index, options, devices)
    except RuntimeError as e:  # out of GPU memory, a type faiss-gpu refuses
        raise UsageError(f"cannot place the index on the GPU: {_reason(e)}") from None
    placed = faiss.downcast_index(placed)
    placed.referenced_objects = [resources]  # GPU memory pools live as long as the index
    return placed


_GPU_RESOURCES: dict[int, object] = {}
_GPU_RESOURCES_LOCK = threading.Lock()


def _resources(device: int):
    """One `StandardGpuResources` per GPU for the process, shared by every placed index (a
    store's segments each place one): each set reserves scratch memory on its GPU."""
    import faiss

    with _GPU_RESOURCES_LOCK:
        if device not in _GPU_RESOURCES:
            _GPU_RESOURCES[device] = faiss.StandardGpuResources()
        return _GPU_RESOURCES[device]


def to_cpu(index):
    """A CPU copy of a placed index (as it is when not on the GPU)."""
    import faiss

    return faiss.index_gpu_to_cpu(index) if is_gpu(index) else index


def is_gpu(index) -> bool:
    """Whether the index inside the id map is a GPU index (or GPU shards or replicas)."""
    import faiss

    gpu_index = getattr(faiss, "GpuIndex", None)
    return gpu_index is not None and isinstance(_device_part(index), gpu_index)


def is_gpu_flat(index) -> bool:
    """Whether the index inside the id map is an exact GPU index (on one GPU or sharded)."""
    import faiss

    return isinstance(_device_part(index), getattr(faiss, "GpuIndexFlat", ()))


def _device_part(index):
    """The index inside the id map, or its first shard or replica."""
    import faiss

    inner = faiss.downcast_index(faiss.downcast_index(index).index)
    if isinstance(inner, (faiss.IndexShards, faiss.IndexReplicas)):
        inner = faiss.downcast_index(inner.at(0))
    return inner


def search(
    index,
    query: np.ndarray,
    n: int,
    allowed: np.ndarray | None = None,
    nprobe: int | None = None,
) -> list[tuple[int, float]]:
    """The `n` best (id, score) of a GPU-placed index for one query, restricted to the ids in
    `allowed` (None: all). The filter is applied to the results, so a selective filter widens
    the search (4x each time) up to the GPU's largest k (`GPU_MAX_K`, also the most results
    one search returns); fewer than `n` then means the caller should search the allowed items
    exactly."""
    params = parameters(index, nprobe)
    query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    allowed = np.unique(allowed) if allowed is not None else None
    n = min(n, index.ntotal if allowed is None else len(allowed))
    if n <= 0:
        return []
    k = n if allowed is None else min(max(4 * n, 64), index.ntotal)
    while True:
        k = min(k, GPU_MAX_K, index.ntotal)
        with _GPU_SEARCH:
            scores, ids = index.search(query, k, params=params)
        keep = ids[0] >= 0
        if allowed is not None:
            keep &= _member(ids[0], allowed)
        found = [(int(i), float(s)) for i, s in zip(ids[0][keep], scores[0][keep])]
        if len(found) >= n or k >= min(GPU_MAX_K, index.ntotal):
            return found[:n]
        k *= 4


def parameters(index, nprobe: int | None = None):
    """Search parameters for a GPU-placed index: IVF's nprobe, or None (GPU FAISS takes no
    id filter: see `search`)."""
    import faiss

    ivf = isinstance(_device_part(index), getattr(faiss, "GpuIndexIVF", ()))
    return faiss.SearchParametersIVF(nprobe=nprobe) if ivf and nprobe else None


def _member(ids: np.ndarray, allowed_sorted: np.ndarray) -> np.ndarray:
    at = np.searchsorted(allowed_sorted, ids).clip(max=len(allowed_sorted) - 1)
    return allowed_sorted[at] == ids


def _check_gpu_type(index) -> None:
    import faiss

    inner = faiss.downcast_index(faiss.downcast_index(index).index)
    gpu_types = (faiss.IndexFlat, faiss.IndexIVFFlat, faiss.IndexIVFScalarQuantizer)
    if isinstance(inner, (*gpu_types, faiss.IndexIVFPQ)):
        return
    raise UsageError(
        f"a {type(inner).__name__} index cannot be placed on the GPU: GPU FAISS runs Flat and "
        "IVF indexes with Flat, SQ or PQ codes (rebuild with e.g. factory IVF4096,PQ64)"
    )


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text.split("Error: ", 1)[-1][:200] or type(error).__name__
