"""The NumPy text tower gives `AudioCLIP.encode_text`'s embeddings, without importing torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from xsearch.models.clip_tokenizer import TextTruncatedWarning, token_rows
from xsearch.models.text_numpy import NumpyTextTower

TEXTS = [
    "dog",
    "a dog barking in the rain",
    ["dog", "bark", "outdoors"],
    "犬の鳴き声 🐶 &amp; café",
    " ".join(f"word{i}" for i in range(100)),  # cut to the full context
    "",
]


def _model_and_arrays(config: str):
    """A seeded AudioCLIP whose text-tower biases and norms are moved off their initial 0 and
    1 (so that a tower ignoring them fails), and its state dict as NumPy arrays."""
    import torch

    from xsearch.models.checkpoint import build_model
    from xsearch.models.config import get_config

    torch.manual_seed(0)
    model = build_model(get_config(config))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith(("visual.", "audio.")) and ("bias" in name or "ln_" in name):
                p.add_(torch.randn_like(p) * 0.1)
    return model, {k: v.numpy() for k, v in model.state_dict().items()}


def _check_against_torch(config: str) -> None:
    import torch

    from xsearch.models.config import get_config
    from xsearch.models.preprocess import tokenize

    model, arrays = _model_and_arrays(config)
    tower = NumpyTextTower(arrays, heads=get_config(config).text.heads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TextTruncatedWarning)
        rows = token_rows(TEXTS)
        tokens = tokenize(TEXTS)
    assert len({len(r) for r in rows}) == len(rows) and max(map(len, rows)) == 77
    got = tower.encode(rows)
    with torch.inference_mode():
        want = model.encode_text(tokens).numpy()
    assert got.dtype == np.float32 and got.shape == want.shape == (len(TEXTS), 1024)
    assert np.abs(got - want).max() <= 1e-4
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() >= 0.99999
    # Each row alone (no padding) gives what it gives in the batch.
    alone = np.concatenate([tower.encode([row]) for row in rows])
    assert np.abs(alone - got).max() <= 1e-5


def test_equals_torch_on_the_tiny_config():
    _check_against_torch("audioclip-tiny")


@pytest.mark.slow
def test_equals_torch_on_the_full_config():
    _check_against_torch("audioclip")


def test_layers_are_counted_from_the_keys_and_other_keys_ignored():
    _, arrays = _model_and_arrays("audioclip-tiny")
    tower = NumpyTextTower(arrays, heads=2)
    assert len(tower.blocks) == 2 and tower.embed_dim == 1024
    text_only = {k: v for k, v in arrays.items() if not k.startswith(("visual.", "audio."))}
    rows = token_rows(["rain on a roof"])
    assert np.array_equal(NumpyTextTower(text_only, heads=2).encode(rows), tower.encode(rows))
    assert tower.encode([]).shape == (0, 1024)


def test_the_head_count_matters():
    _, arrays = _model_and_arrays("audioclip-tiny")
    rows = token_rows(["a dog barking in the rain"])
    two, one = NumpyTextTower(arrays, heads=2), NumpyTextTower(arrays, heads=1)
    assert np.abs(two.encode(rows) - one.encode(rows)).max() > 1e-3


@pytest.mark.slow
def test_text_path_never_imports_torch():
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        from xsearch.models.clip_tokenizer import token_rows
        from xsearch.models.text_numpy import NumpyTextTower

        rng = np.random.default_rng(0)
        width, vocab = 64, 49408
        arrays = {
            "token_embedding.weight": rng.standard_normal((vocab, width), np.float32),
            "positional_embedding": rng.standard_normal((77, width), np.float32),
            "ln_final.weight": np.ones(width, np.float32),
            "ln_final.bias": np.zeros(width, np.float32),
            "text_projection": rng.standard_normal((width, 32), np.float32),
        }
        shapes = {
            "ln_1": (width, width), "ln_2": (width, width),
            "attn.in_proj": (3 * width, width), "attn.out_proj": (width, width),
            "mlp.c_fc": (4 * width, width), "mlp.c_proj": (width, 4 * width),
        }
        for i in range(2):
            for name, (out, inp) in shapes.items():
                sep = "_" if name == "attn.in_proj" else "."
                key = f"transformer.resblocks.{i}.{name}{sep}"
                weight = (out,) if name.startswith("ln_") else (out, inp)
                arrays[key + "weight"] = rng.standard_normal(weight, np.float32)
                arrays[key + "bias"] = rng.standard_normal(out, np.float32)
        vecs = NumpyTextTower(arrays, heads=2).encode(token_rows(["a dog barking", "rain"]))
        assert vecs.shape == (2, 32) and np.isfinite(vecs).all()
        heavy = sorted(m for m in ("torch", "open_clip", "ftfy") if m in sys.modules)
        print("imported:", heavy)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # Plain text needs no ftfy either; non-plain text would load it (and still not torch).
    assert out.stdout.strip() == "imported: []"
