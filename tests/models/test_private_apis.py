"""Every private or undocumented API of open_clip, torch and FAISS that xsearch relies on,
exercised through xsearch's own code.

constraints.txt pins the versions these were tested with. After an upgrade, a failure here
names the API that changed, instead of wrong vectors or a crash somewhere far away.
"""

from __future__ import annotations

import gc
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from xsearch.models.checkpoint import build_model, expected_shapes
from xsearch.models.config import get_config

OFFICIAL = Path(__file__).resolve().parents[1] / "data" / "audioclip_state_dict.tsv"


@contextmanager
def relies_on(api: str) -> Iterator[None]:
    """Turn any failure inside the block into one naming `api`."""
    try:
        yield
    except Exception as err:  # an AssertionError too: the API changed behaviour
        pytest.fail(
            f"{api} no longer behaves as xsearch relies on ({type(err).__name__}: {err}); "
            "constraints.txt pins the versions it was tested with",
            pytrace=True,
        )


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(get_config("audioclip-tiny"))


# --- open_clip -------------------------------------------------------------------------------


def test_open_clip_clip_subclass_keeps_the_official_key_names():
    """AudioCLIP subclasses open_clip.model.CLIP so that an official checkpoint's CLIP part
    loads key for key: the keys and shapes come from open_clip's module layout."""
    import open_clip.model

    from xsearch.models.audioclip import AudioCLIP

    official = {}
    for line in OFFICIAL.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, shape, _ = line.split("\t")
            official[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    with relies_on("open_clip.model.CLIP (subclassed by AudioCLIP: its parameter names)"):
        assert issubclass(AudioCLIP, open_clip.model.CLIP)
        ours = expected_shapes(get_config("audioclip"))
        clip_part = {k: v for k, v in ours.items() if not k.startswith(("audio.", "logit_scale_"))}
        assert clip_part == {k: v for k, v in official.items() if k in clip_part}
        assert set(clip_part) == {
            k for k in official if not k.startswith(("audio.", "logit_scale_"))
        }


def test_open_clip_clip_text_tower_attributes_match_its_own_encode_text(tiny):
    """AudioCLIP.encode_text replaces CLIP's, reading its attributes (token_embedding,
    positional_embedding, transformer(x, attn_mask=...), ln_final, text_projection): on
    full-length tokens both must give the same embedding."""
    import open_clip.model

    from xsearch.models.preprocess import tokenize

    tokens = torch.zeros(2, 77, dtype=torch.long)
    short = tokenize(["a dog barking", "rain on a tin roof"])
    tokens[:, : short.shape[1]] = short
    with relies_on("open_clip.model.CLIP text-tower attributes (used by AudioCLIP.encode_text)"):
        with torch.no_grad():
            ours = tiny.encode_text(tokens)
            theirs = open_clip.model.CLIP.encode_text(tiny, tokens)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_open_clip_modified_resnet_batchnorms_are_all_folded(tiny):
    """fuse.py folds BatchNorms by the conv1/bn1 .. conv3/bn3 attribute names of
    open_clip.modified_resnet.Bottleneck and ModifiedResNet's stem."""
    import copy

    from open_clip import modified_resnet

    from xsearch.models.fuse import conv_bn_pairs, fold_batchnorms

    visual = copy.deepcopy(tiny.visual).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with relies_on("open_clip.modified_resnet (Bottleneck, ModifiedResNet: convN/bnN names)"):
        assert isinstance(visual, modified_resnet.ModifiedResNet)
        assert any(isinstance(m, modified_resnet.Bottleneck) for m in visual.modules())
        batchnorms = sum(isinstance(m, nn.BatchNorm2d) for m in visual.modules())
        assert batchnorms and len(conv_bn_pairs(visual)) == batchnorms
        with torch.no_grad():
            before = visual(x)
            assert fold_batchnorms(visual) == batchnorms
            after = visual(x)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in visual.modules())
        torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_open_clip_tokenizer_ids():
    """clip_tokenizer reads CLIP's BPE merges from open_clip's package folder
    (bpe_simple_vocab_16e6.txt.gz, found without importing open_clip)."""
    from xsearch.models.clip_tokenizer import token_rows, vocab_path

    with relies_on("open_clip's bpe_simple_vocab_16e6.txt.gz in its package folder"):
        assert vocab_path().parent.name == "open_clip"
        row = token_rows(["a dog"])[0]
        assert row[0] == 49406 and row[-1] == 49407 and len(row) == 4


# --- torch -----------------------------------------------------------------------------------


def test_torch_tensor_version_counter_invalidates_the_frontend_cache():
    """inference._MemoMatrix keys its cache on each parameter's `_version`, which torch bumps
    on every in-place change: a changed parameter must give a recomputed matrix."""
    from xsearch.models.audio_frontend import FrequencyBSpline
    from xsearch.models.inference import cache_frontend_matrices

    torch.manual_seed(0)
    model = build_model(get_config("audioclip-tiny"))
    n_fft = model.config.audio.n_fft
    with relies_on("torch.Tensor._version (the frontend matrix cache key)"):
        assert cache_frontend_matrices(model) == 1
        fbsp = next(m for m in model.modules() if isinstance(m, FrequencyBSpline))
        version = fbsp.m._version
        with torch.no_grad():
            first = fbsp.matrix(n_fft)
            assert fbsp.matrix(n_fft) is first  # remembered
            fbsp.m.add_(0.5)
            assert fbsp.m._version > version
            second = fbsp.matrix(n_fft)
        assert second is not first and not torch.allclose(second, first)
        torch.testing.assert_close(second, FrequencyBSpline.matrix(fbsp, n_fft))


def test_torch_load_on_meta_reads_shapes_only(tiny_checkpoint, tmp_path):
    """checkpoint.read_shapes loads on the meta device to learn a checkpoint's config without
    reading its data: the tensor bytes may be anything."""
    from xsearch.models.checkpoint import checkpoint_config, read_shapes

    with relies_on("torch.load with map_location='meta' skipping the tensor data"):
        shapes = read_shapes(tiny_checkpoint)
        assert all(t.is_meta for t in shapes.values())
        assert checkpoint_config(tiny_checkpoint).name == "audioclip-tiny"


# --- FAISS -----------------------------------------------------------------------------------


def _vectors(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_faiss_rev_swig_ptr_views_a_flat_index_vectors():
    """engine._flat_view reads an IndexFlat's vectors in place through
    faiss.rev_swig_ptr(index.get_xb(), n * d)."""
    from xsearch.indexes import faiss_index
    from xsearch.search.engine import _flat_view

    ids, vectors = np.arange(100, 150, dtype=np.int64), _vectors(50)
    index = faiss_index.build(ids, vectors, "Flat")
    with relies_on("faiss.rev_swig_ptr(IndexFlat.get_xb()) (exact search's zero-copy view)"):
        view = _flat_view(index)
        assert view is not None
        got_ids, got = view
        np.testing.assert_array_equal(got_ids, ids)
        np.testing.assert_array_equal(got, vectors)
        assert not got.flags.owndata  # a view of the index's memory, not a copy


def test_faiss_search_parameters_keep_their_parts_alive():
    """SWIG holds no reference from search parameters to their id selector and base
    parameters; engine.search_parameters keeps them in `params._keep` (a Python attribute
    on a SWIG object). After a garbage collection the filter must still apply."""
    from xsearch.indexes import faiss_index
    from xsearch.search.engine import SearchOptions, search_parameters

    vectors = _vectors(400)
    ids = np.arange(1000, 1400, dtype=np.int64)
    allowed = ids[::7]
    for factory in ("Flat", "IVF4,Flat,RFlat"):
        index = faiss_index.build(ids, vectors, factory)
        with relies_on(f"faiss SearchParameters._keep ({factory}: the id filter's lifetime)"):
            params = search_parameters(index, allowed, SearchOptions())
            assert params._keep
            gc.collect()
            _, found = index.search(vectors[:5], 10, params=params)
            hits = found[found >= 0]
            assert len(hits) and set(hits.tolist()) <= set(allowed.tolist())


def test_faiss_ivf_removal_renumbers_the_lists_positions():
    """faiss_index._remove rewrites an IVF list's positions in place through
    faiss.rev_swig_ptr(invlists.get_ids(i), n)."""
    from xsearch.indexes import faiss_index

    vectors = _vectors(300, seed=2)
    ids = np.arange(300, dtype=np.int64) * 10
    index = faiss_index.build(ids, vectors, "IVF4,Flat")
    faiss_index.ivf_of(index).nprobe = 4  # every list: exact, so the answer is known
    with relies_on("faiss.rev_swig_ptr(InvertedLists.get_ids(i)) (IVF removals)"):
        faiss_index.update(index, ids[:100:3], np.empty(0, np.int64), np.empty((0, 16)))
        kept = np.setdiff1d(np.arange(300), np.arange(100)[::3])
        _, found = index.search(vectors[kept], 1)
        np.testing.assert_array_equal(found[:, 0], ids[kept])


def test_faiss_on_disk_lists_filename_is_writable(tmp_path):
    """faiss_index.read points a loaded on-disk index at its lists by assigning
    `OnDiskInvertedLists.filename` (and start_on_disk hands the lists over with
    `lists.this.disown()`); moved list files must still be found and searched."""
    from xsearch.indexes import faiss_index

    vectors = _vectors(300, seed=3)
    ids = np.arange(300, dtype=np.int64) + 7
    index = faiss_index.new_index(16, "IVF4,Flat")
    faiss_index.train(index, vectors)
    lists_path, index_path = tmp_path / "a.ivfdata", tmp_path / "a.faiss"
    with relies_on("faiss OnDiskInvertedLists.filename / SWIG this.disown()"):
        faiss_index.start_on_disk(index, lists_path)
        faiss_index.add(index, ids, vectors)
        faiss_index.finish_on_disk(index, lists_path)
        faiss_index.write(index, index_path)
        del index
        moved = tmp_path / "elsewhere.ivfdata"
        shutil.move(lists_path, moved)
        loaded = faiss_index.read(index_path, moved)
        assert faiss_index.ivfdata_file(loaded) == moved
        faiss_index.ivf_of(loaded).nprobe = 4
        _, found = loaded.search(vectors[:20], 1)
        np.testing.assert_array_equal(found[:, 0], ids[:20])
