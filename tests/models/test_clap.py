"""LAION-CLAP and MS CLAP: the official key lists, and what the embeddings are made of."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from xsearch.errors import UsageError
from xsearch.models.clap import LaionClap, MsClap, build_clap, tower_modules, tower_prefixes
from xsearch.models.clap_config import clap_config
from xsearch.models.registry import names_of_family, spec_for

DATA = Path(__file__).resolve().parents[1] / "data"


def official_keys(tsv: str, prefix: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """key -> (shape, dtype) from an official key list, `prefix` stripped."""
    keys = {}
    for line in (DATA / tsv).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, dtype = line.split("\t")
        assert key.startswith(prefix)
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        keys[key[len(prefix) :]] = (dims, dtype)
    return keys


@pytest.mark.parametrize(
    ("name", "tsv", "prefix"),
    [
        ("laion-clap", "laion_clap_state_dict.tsv", "module."),
        ("msclap-2023", "msclap_2023_state_dict.tsv", ""),
    ],
)
def test_full_configs_have_exactly_the_official_keys_shapes_and_dtypes(name, tsv, prefix):
    want = official_keys(tsv, prefix)
    # newer transformers dropped this buffer and the official loader deletes it too
    want.pop("text_branch.embeddings.position_ids", None)
    model = build_clap(clap_config(name), device="meta")
    got = {
        k: (tuple(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in model.state_dict().items()
    }
    assert sorted(set(got) ^ set(want)) == []
    assert {k: v for k, v in got.items() if want[k] != v} == {}
    assert all(v.is_meta for v in model.state_dict().values())


def test_configs_and_their_specs():
    names = names_of_family("laion-clap") + names_of_family("msclap")
    assert {"laion-clap", "laion-clap-tiny", "msclap-2023", "msclap-2023-tiny"} <= set(names)
    laion = clap_config("laion-clap")
    assert (laion.family, laion.embed_dim, laion.audio.clip_samples) == ("laion-clap", 512, 480_000)
    assert laion.audio.htsat.freq_ratio == 4 and laion.audio.htsat.num_features == 768
    spec = spec_for("msclap-2023")
    assert (spec.family, spec.dim, spec.modalities) == ("msclap", 1024, ("audio", "text"))
    assert (spec.audio.sample_rate, spec.audio.clip_seconds) == (44100, 7.0)
    assert spec.text.context_length == 77 and spec.image is None
    with pytest.raises(UsageError, match=r"known models: .*laion-clap"):
        clap_config("clap")
    with pytest.raises(UsageError, match="audioclip family"):
        clap_config("audioclip")


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    laion = build_clap(clap_config("laion-clap-tiny"))
    torch.manual_seed(0)
    ms = build_clap(clap_config("msclap-2023-tiny"))
    assert isinstance(laion, LaionClap) and isinstance(ms, MsClap)
    assert not laion.training and not ms.training
    return {"laion": laion, "ms": ms}


@pytest.mark.parametrize("which", ["laion", "ms"])
def test_audio_embedding_is_the_projection_of_the_mean_token(tiny_models, which):
    model = tiny_models[which]
    cfg = model.config
    waves = torch.randn(3, cfg.audio.clip_samples) * 0.1
    with torch.no_grad():
        out = model.audio_embedding(waves)
        if which == "laion":
            want = model.audio_projection(model.audio_branch(waves))
            tower = model.audio_branch
        else:
            want = model.audio_encoder.projection(model.audio_encoder.base.htsat(waves))
            tower = model.audio_encoder.base.htsat
        mean_token = tower.tokens(tower.fold(tower.log_mel(waves))).mean(1)
    assert out.shape == (3, cfg.embed_dim)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(tower(waves), mean_token)
    assert F.cosine_similarity(out[0], out[1], dim=0) < 0.9999  # distinct clips, distinct rows


def test_laion_text_embedding_projects_the_pooled_first_token(tiny_models):
    model = tiny_models["laion"]
    ids = torch.tensor([[0, 40, 41, 2, 1, 1], [0, 50, 2, 1, 1, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        out = model.text_embedding(ids, mask)
        hidden, _ = model.text_branch(ids, mask)
        want = model.text_projection(torch.tanh(model.text_branch.pooler.dense(hidden[:, 0])))
    torch.testing.assert_close(out, want)
    assert out.shape == (2, 32) and (out[0] - out[1]).abs().max() > 1e-4


def test_ms_text_embedding_reads_the_token_before_the_count_of_nonzero_ids(tiny_models):
    model = tiny_models["ms"]
    # a text holding "!" (id 0) twice: msclap's index is (ids != 0).sum() - 1 = 3, not 5
    ids = torch.tensor([[7, 0, 9, 0, 11, 256, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        out = model.text_embedding(ids, mask)
        hidden = model.caption_encoder.base(ids, mask)
        want = model.caption_encoder.projection(hidden[:, 3])
    torch.testing.assert_close(out, want)
    # the projection: LayerNorm(linear1(x) + linear2(gelu(linear1(x)))), no biases
    p = model.caption_encoder.projection
    x = hidden[:, 3]
    first = x @ p.linear1.weight.T
    manual = F.layer_norm(
        first + F.gelu(first) @ p.linear2.weight.T, (32,), p.layer_norm.weight, p.layer_norm.bias
    )
    torch.testing.assert_close(out, manual)


def test_tower_modules_and_prefixes_split_the_state_dict(tiny_models):
    for model in tiny_models.values():
        family = model.config.family
        keys = set(model.state_dict())
        audio = {k for k in keys if k.startswith(tower_prefixes(family, "audio"))}
        text = {k for k in keys if k.startswith(tower_prefixes(family, "text"))}
        assert audio and text and not audio & text
        assert all("htsat" in k or "audio" in k for k in audio)
        assert len(tower_modules(model, "audio")) == len(tower_prefixes(family, "audio"))


def test_build_on_meta_allocates_nothing_and_takes_weights_by_assignment():
    cfg = clap_config("laion-clap-tiny")
    with torch.device("meta"):
        model = build_clap(cfg)
    assert all(t.is_meta for t in model.state_dict().values())
    torch.manual_seed(1)
    real = build_clap(cfg)
    model.load_state_dict(real.state_dict(), strict=True, assign=True)
    waves = torch.randn(1, cfg.audio.clip_samples)
    with torch.no_grad():
        torch.testing.assert_close(model.audio_embedding(waves), real.audio_embedding(waves))
