"""Parameter files that are pickles (MMV's `.pkl` checkpoints) are read without running code:
arrays, scalars and nested dicts as plain pickle, dill 0.3 and Haiku's 2020 mapping write
them; anything else is refused in one line, before it is called."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest

from xsearch.errors import CheckpointError
from xsearch.models.pickled_params import read_pickled_params


def params() -> dict:
    """A Haiku-shaped tree: {'params': {module: {name: array}}, 'state': {...}}."""
    rng = np.random.default_rng(0)
    return {
        "params": {
            "text_audio_video/~/visual_module/~/S3D/Conv2d_1a_7x7/conv3_d": {
                "w": rng.standard_normal((2, 4, 4, 24, 8)).astype(np.float32)
            },
            "text_audio_video/~/text_module/~/embed": {
                "embeddings": rng.standard_normal((16, 3)).astype(np.float32)
            },
        },
        "state": {
            "bn/~/mean_ema": {
                "average": np.zeros((1, 8), np.float32),
                "counter": np.array(7, np.int32),
            }
        },
    }


def same(a, b) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            same(a[key], b[key])
    else:
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_pickles_of_every_protocol(tmp_path, protocol):
    path = tmp_path / "mmv_s3d.pkl"
    tree = params()
    tree["step"] = np.int32(12)  # a NumPy scalar
    path.write_bytes(pickle.dumps(tree, protocol=protocol))
    same(read_pickled_params(path), tree)


@pytest.fixture
def fake_module(monkeypatch):
    """Register a module under `name` for the time of the test (what wrote the file)."""

    def make(name: str, **members) -> types.ModuleType:
        parts = name.split(".")
        for depth in range(1, len(parts)):  # its parent packages, unless they exist
            parent = ".".join(parts[:depth])
            if parent not in sys.modules:
                monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
        module = types.ModuleType(name)
        for key, value in members.items():
            value.__module__ = name
            value.__qualname__ = key
            setattr(module, key, value)
        monkeypatch.setitem(sys.modules, name, module)
        return module

    return make


def test_haiku_flat_mappings_are_read_as_dicts(tmp_path, fake_module, monkeypatch):
    class FlatMapping(dict):
        def __reduce__(self):
            return (FlatMapping, (dict(self),))

    fake_module("haiku._src.data_structures", FlatMapping=FlatMapping)
    tree = {k: FlatMapping({m: FlatMapping(v) for m, v in d.items()}) for k, d in params().items()}
    path = tmp_path / "mmv.pkl"
    path.write_bytes(pickle.dumps(FlatMapping(tree), protocol=4))
    monkeypatch.delitem(sys.modules, "haiku._src.data_structures")  # not needed to read it
    loaded = read_pickled_params(path)
    assert type(loaded) is dict and type(loaded["params"]) is dict
    same(loaded, params())


def test_dills_indirection_to_numpy_is_followed_no_further(tmp_path, fake_module):
    """dill 0.3 names NumPy's `_reconstruct` as `_get_attr(_import_module(MODULE), NAME)`."""

    def _import_module(name):  # what the writer's dill would do: never called here
        raise AssertionError("not called while reading")

    def _get_attr(module, name):
        raise AssertionError("not called while reading")

    fake_module("dill._dill", _import_module=_import_module, _get_attr=_get_attr)

    class Module:
        def __init__(self, name):
            self.name = name

        def __reduce__(self):
            return (_import_module, (self.name,))

    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]

    class DillPickler(pickle.Pickler):
        def reducer_override(self, obj):
            if obj is reconstruct:
                return (_get_attr, (Module("numpy.core._multiarray_umath"), "_reconstruct"))
            return NotImplemented

    def dill_dumps(obj) -> bytes:
        import io

        buffer = io.BytesIO()
        DillPickler(buffer, protocol=3).dump(obj)
        return buffer.getvalue()

    path = tmp_path / "mmv.pkl"
    path.write_bytes(dill_dumps(params()))
    assert b"dill._dill" in path.read_bytes() and b"_multiarray_umath" in path.read_bytes()
    same(read_pickled_params(path), params())
    # the same indirection to anything else is refused
    path.write_bytes(dill_dumps({"x": Module("os")}))
    with pytest.raises(CheckpointError, match="global module os"):
        read_pickled_params(path)


class _Runs:
    def __reduce__(self):
        import os

        return (os.system, ("echo this must never run",))


def test_code_in_a_file_is_refused_before_it_runs(tmp_path, capfd):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"params": {"m": {"w": _Runs()}}}))
    with pytest.raises(CheckpointError, match=r"refused: .*global \w+\.system") as caught:
        read_pickled_params(path)
    assert "\n" not in str(caught.value)
    assert "must never run" not in capfd.readouterr().out


def test_object_arrays_and_broken_files_are_refused(tmp_path):
    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps({"w": np.array([1, "a"], dtype=object)}))
    with pytest.raises(CheckpointError, match="Python objects"):
        read_pickled_params(path)
    path.write_bytes(pickle.dumps(params())[:-20])
    with pytest.raises(CheckpointError, match="not a readable pickle"):
        read_pickled_params(path)
    with pytest.raises(CheckpointError, match="no such parameter file"):
        read_pickled_params(tmp_path / "absent.pkl")
