"""Reading parameter files that are Python pickles (MMV's `.pkl` checkpoints) without running any
code from them.

A pickle is a program: loading one with `pickle.load` (or `dill.load`, as MMV's release does)
runs whatever callables it names. Here a restricted unpickler builds only NumPy arrays, NumPy
scalars and dtypes, strings and numbers, lists and dicts. The callables the known writers use
for those are allowed, nothing else:
- plain pickle: `numpy.core.multiarray._reconstruct` and `scalar` (`numpy._core` since NumPy
  2), `numpy.ndarray`, `numpy.dtype`, `_codecs.encode` (protocol 2), `numpy.core.numeric.
  _frombuffer` (protocol 5);
- dill 0.3 (MMV's 2020 files): the same functions reached as `dill._dill._get_attr(dill._dill.
  _import_module("numpy.core._multiarray_umath"), "_reconstruct")`: only those modules and
  names are answered;
- Haiku's immutable mapping of 2020 (`haiku._src.data_structures.FlatMapping`), rebuilt from
  the plain dict it pickles as, is read as a dict.
Any other global is refused with one line naming it, before it is called. Arrays of Python
objects (dtype object) are refused too, as reading them would unpickle arbitrary objects.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from xsearch.errors import CheckpointError

_CORE = getattr(np, "_core", None) or np.core
_FUNCTIONS = {
    "_reconstruct": _CORE.multiarray._reconstruct,
    "scalar": _CORE.multiarray.scalar,
    "_frombuffer": _CORE.numeric._frombuffer,
}
_MODULES = ("numpy.core", "numpy._core")
# (module, name) -> what the pickle gets; either NumPy's spelling
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("codecs").encode,
    **{(f"{m}.multiarray", n): _FUNCTIONS[n] for m in _MODULES for n in ("_reconstruct", "scalar")},
    **{(f"{m}.numeric", "_frombuffer"): _FUNCTIONS["_frombuffer"] for m in _MODULES},
}
_AS_DICT = {("haiku._src.data_structures", n) for n in ("FlatMapping", "frozendict")}
# dill's indirection: modules it may import and the names it may take from them
_DILL_MODULES = {
    **{f"{m}._multiarray_umath": ("_reconstruct", "scalar") for m in _MODULES},
    **{f"{m}.multiarray": ("_reconstruct", "scalar") for m in _MODULES},
    "_codecs": ("encode",),
}


class _ModuleName(str):
    """What dill's `_import_module` gives here: the name, for `_get_attr` to judge."""


def _import_module(name: str) -> _ModuleName:
    if name not in _DILL_MODULES:
        raise pickle.UnpicklingError(f"GLOBAL module {name}")
    return _ModuleName(name)


def _get_attr(module: Any, name: str) -> Any:
    if not isinstance(module, _ModuleName) or name not in _DILL_MODULES[module]:
        raise pickle.UnpicklingError(f"GLOBAL {module}.{name}")
    return __import__("codecs").encode if module == "_codecs" else _FUNCTIONS[name]


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if (module, name) in _AS_DICT:
            return dict
        if module == "dill._dill" and name in ("_import_module", "_get_attr"):
            return _import_module if name == "_import_module" else _get_attr
        raise pickle.UnpicklingError(f"GLOBAL {module}.{name}")


def read_pickled_params(path: str | Path) -> Any:
    """The nested dicts, lists, arrays and numbers pickled in the file at `path`; a
    CheckpointError in one line for a file that needs anything else (nothing of it runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such parameter file")
    try:
        with open(path, "rb") as f:
            obj = _Restricted(io.BufferedReader(f)).load()
    except pickle.UnpicklingError as err:
        found = str(err).removeprefix("GLOBAL ")
        if str(err).startswith("GLOBAL "):
            raise CheckpointError(
                f"{path}: refused: the file needs the Python global {found}, which is not "
                "allowed in a parameter file (nothing in it was run)"
            ) from None
        raise CheckpointError(f"{path}: not a readable pickle ({err})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise CheckpointError(f"{path}: not a readable pickle ({type(err).__name__})") from None
    _check_arrays(obj, path)
    return obj


def _check_arrays(obj: Any, path: Path) -> None:
    if isinstance(obj, dict):
        for value in obj.values():
            _check_arrays(value, path)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _check_arrays(value, path)
    elif isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.hasobject:
        raise CheckpointError(f"{path}: refused: an array of Python objects")
