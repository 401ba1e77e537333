"""The plain-torch RoBERTa and GPT-2 against transformers' models on the same random weights."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from xsearch.models.clap_config import clap_config
from xsearch.models.clap_text import Gpt2, Roberta


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Weights far from their initial values, so that LayerNorm and bias mistakes show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _masks(vocab: int, first: int, pad: int, seed: int):
    """ids and masks [4, 24]: full, right-padded at two lengths, and one token long."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(first, vocab, (4, 24), generator=g)
    mask = torch.ones_like(ids)
    for row, length in ((1, 13), (2, 5), (3, 1)):
        ids[row, length:] = pad
        mask[row, length:] = 0
    return ids, mask


@pytest.mark.slow  # importing transformers' models takes seconds
def test_roberta_matches_transformers():
    transformers = pytest.importorskip("transformers")
    c = clap_config("laion-clap-tiny").text
    ref = transformers.RobertaModel(
        transformers.RobertaConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.width,
            num_hidden_layers=c.layers,
            num_attention_heads=c.heads,
            intermediate_size=c.mlp_width,
            max_position_embeddings=c.max_positions,
            type_vocab_size=1,
            pad_token_id=1,
            layer_norm_eps=1e-5,
        )
    ).eval()
    _randomise(ref, 0)
    ours = Roberta(c).eval()
    state = {k: v for k, v in ref.state_dict().items() if k != "embeddings.position_ids"}
    ours.load_state_dict(state, strict=True)
    ids, mask = _masks(c.vocab_size, 3, pad=1, seed=1)
    ids[:, 0] = 0  # <s>
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask)
        hidden, pooled = ours(ids, mask)
    torch.testing.assert_close(hidden, want.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled, want.pooler_output, atol=1e-5, rtol=0)


def test_roberta_positions_count_from_the_pad_id():
    """Real tokens take positions 2, 3, ... (pad id 1 + their 1-based count); pads take 1."""
    c = clap_config("laion-clap-tiny").text
    ours = Roberta(c).eval()
    ids = torch.tensor([[0, 7, 8, 2, 1, 1]])

    def moved_by(row: int) -> torch.Tensor:
        with torch.no_grad():
            table = ours.embeddings.position_embeddings.weight
            before = ours.embeddings(ids)
            table[row] += torch.linspace(-1, 1, c.width)
            after = ours.embeddings(ids)
            table[row] -= torch.linspace(-1, 1, c.width)
        return ((after - before).abs().amax(-1)[0] > 0).nonzero().flatten()

    assert moved_by(4).tolist() == [2]  # the third real token
    assert moved_by(1).tolist() == [4, 5]  # the padding


@pytest.mark.slow
def test_gpt2_matches_transformers():
    transformers = pytest.importorskip("transformers")
    c = clap_config("msclap-2023-tiny").text
    ref = transformers.GPT2Model(
        transformers.GPT2Config(
            vocab_size=c.vocab_size,
            n_embd=c.width,
            n_layer=c.layers,
            n_head=c.heads,
            n_inner=c.mlp_width,
            n_positions=c.max_positions,
        )
    ).eval()
    _randomise(ref, 2)
    ours = Gpt2(c).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    ids, mask = _masks(c.vocab_size, 1, pad=0, seed=3)
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours(ids, mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_gpt2_is_causal_and_ignores_padding():
    c = clap_config("msclap-2023-tiny").text
    torch.manual_seed(0)
    ours = Gpt2(c).eval()
    _randomise(ours, 4)
    ids = torch.tensor([[5, 6, 7, 8, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    later = ids.clone()
    later[0, 3] = 9
    with torch.no_grad():
        a, b = ours(ids, mask), ours(later, mask)
        longer = ours(
            torch.cat([ids, torch.zeros(1, 5, dtype=ids.dtype)], 1),
            torch.cat([mask, torch.zeros(1, 5, dtype=mask.dtype)], 1),
        )
    assert torch.equal(a[0, :3], b[0, :3]) and (a[0, 3] - b[0, 3]).abs().max() > 0
    torch.testing.assert_close(longer[0, :4], a[0, :4], atol=1e-6, rtol=0)


@pytest.mark.slow
def test_building_and_running_the_towers_does_not_import_transformers():
    code = (
        "import sys, torch\n"
        "from xsearch.models.clap import build_clap\n"
        "from xsearch.models.clap_config import clap_config\n"
        "for name in ('laion-clap-tiny', 'msclap-2023-tiny'):\n"
        "    m = build_clap(clap_config(name))\n"
        "    m.text_embedding(torch.tensor([[0, 5, 2]]), torch.ones(1, 3, dtype=torch.long))\n"
        "assert 'transformers' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
