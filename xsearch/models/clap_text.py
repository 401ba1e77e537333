"""The CLAP text towers in plain torch: RoBERTa (LAION-CLAP) and GPT-2 (Microsoft CLAP).

Both keep Hugging Face's module and parameter names (`embeddings.word_embeddings`,
`encoder.layer.N.attention.self.query`, `pooler.dense`; GPT-2's `wte`, `wpe`, `h.N.attn.c_attn`
with its [in, out] Conv1D weights, `ln_f`), so the official checkpoints load as they are, and
compute what `transformers`' `RobertaModel` and `GPT2Model` compute in inference. They are
written out rather than imported because importing `transformers` alone takes about seven
seconds here, longer than a text query should take in all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xsearch.models.clap_config import ClapTextConfig

ROBERTA_PAD_ID = 1  # RoBERTa's <pad>; positions count from it, as fairseq did
LAYER_NORM_EPS = 1e-5  # both towers' LayerNorm epsilon


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean attention mask -> the additive one transformers uses: 0 where attention is
    allowed, the dtype's most negative value where not (so a fully masked row stays finite)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min
    )


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, c = x.shape
    return x.view(b, t, heads, c // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def _embedding(rows: int, width: int) -> nn.Embedding:
    """An embedding left uninitialised (`_init_normal` fills it): nn.Embedding's own init
    on the meta device loads torch's reference kernels, seconds for nothing."""
    return nn.Embedding(rows, width, _weight=torch.empty(rows, width))


def _init_normal(module: nn.Module) -> None:
    """Hugging Face's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms
    (nothing to do on the meta device, where a checkpoint will supply every value)."""
    if getattr(module, "weight", None) is not None and module.weight.is_meta:
        return
    if isinstance(module, (nn.Linear, nn.Embedding, Conv1D)):
        nn.init.normal_(module.weight, std=0.02)
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor):
            nn.init.zeros_(bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# --- RoBERTa -------------------------------------------------------------------------------------


class RobertaEmbeddings(nn.Module):
    def __init__(self, c: ClapTextConfig) -> None:
        super().__init__()
        self.word_embeddings = _embedding(c.vocab_size, c.width)
        self.position_embeddings = _embedding(c.max_positions, c.width)
        self.token_type_embeddings = _embedding(1, c.width)
        self.LayerNorm = nn.LayerNorm(c.width, eps=LAYER_NORM_EPS)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # Positions count real tokens only, from pad id + 1 (fairseq's rule); pads get pad id.
        real = (input_ids != ROBERTA_PAD_ID).long()
        positions = torch.cumsum(real, dim=1) * real + ROBERTA_PAD_ID
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        return self.LayerNorm(x + self.token_type_embeddings.weight[0])


class RobertaSelfAttention(nn.Module):
    def __init__(self, c: ClapTextConfig) -> None:
        super().__init__()
        self.heads = c.heads
        self.query = nn.Linear(c.width, c.width)
        self.key = nn.Linear(c.width, c.width)
        self.value = nn.Linear(c.width, c.width)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        q, k, v = (_split_heads(f(x), self.heads) for f in (self.query, self.key, self.value))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=_additive(allowed, q.dtype))
        return _merge_heads(out)


class DenseNorm(nn.Module):
    """dense -> residual add -> LayerNorm (post-LN), HF's RobertaSelfOutput / RobertaOutput."""

    def __init__(self, width_in: int, width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, width)
        self.LayerNorm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class RobertaAttention(nn.Module):
    def __init__(self, c: ClapTextConfig) -> None:
        super().__init__()
        self.self = RobertaSelfAttention(c)
        self.output = DenseNorm(c.width, c.width)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, allowed), x)


class Intermediate(nn.Module):
    def __init__(self, c: ClapTextConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.width, c.mlp_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # the exact (erf) GELU


class RobertaLayer(nn.Module):
    def __init__(self, c: ClapTextConfig) -> None:
        super().__init__()
        self.attention = RobertaAttention(c)
        self.intermediate = Intermediate(c)
        self.output = DenseNorm(c.mlp_width, c.width)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, allowed)
        return self.output(self.intermediate(x), x)


class RobertaEncoder(nn.Module):
    def __init__(self, c: ClapTextConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(RobertaLayer(c) for _ in range(c.layers))


class Pooler(nn.Module):
    def __init__(self, c: ClapTextConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.width, c.width)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # the first token (<s>)


class Roberta(nn.Module):
    """(input_ids, attention_mask) [B, T] -> (last hidden state [B, T, width], pooled
    [B, width]), as `RobertaModel(...)`'s last_hidden_state and pooler_output."""

    def __init__(self, config: ClapTextConfig) -> None:
        super().__init__()
        self.embeddings = RobertaEmbeddings(config)
        self.encoder = RobertaEncoder(config)
        self.pooler = Pooler(config)
        self.apply(_init_normal)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embeddings(input_ids)
        allowed = attention_mask[:, None, None, :] != 0  # [B, 1, 1, T]: keys that are text
        for layer in self.encoder.layer:
            x = layer(x, allowed)
        return x, self.pooler(x)


# --- GPT-2 ---------------------------------------------------------------------------------------


class Conv1D(nn.Module):
    """GPT-2's linear layer: weight stored [in, out], y = x @ W + b."""

    def __init__(self, width_in: int, width_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(width_in, width_out))
        self.bias = nn.Parameter(torch.zeros(width_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.weight) + self.bias


class Gpt2Attention(nn.Module):
    def __init__(self, c: ClapTextConfig) -> None:
        super().__init__()
        self.heads = c.heads
        self.c_attn = Conv1D(c.width, 3 * c.width)
        self.c_proj = Conv1D(c.width, c.width)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        q, k, v = (_split_heads(t, self.heads) for t in self.c_attn(x).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=_additive(allowed, q.dtype))
        return self.c_proj(_merge_heads(out))


class Gpt2Mlp(nn.Module):
    def __init__(self, c: ClapTextConfig) -> None:
        super().__init__()
        self.c_fc = Conv1D(c.width, c.mlp_width)
        self.c_proj = Conv1D(c.mlp_width, c.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # GPT-2's "gelu_new"


class Gpt2Block(nn.Module):
    def __init__(self, c: ClapTextConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.width, eps=LAYER_NORM_EPS)
        self.attn = Gpt2Attention(c)
        self.ln_2 = nn.LayerNorm(c.width, eps=LAYER_NORM_EPS)
        self.mlp = Gpt2Mlp(c)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), allowed)
        return x + self.mlp(self.ln_2(x))


class Gpt2(nn.Module):
    """(input_ids, attention_mask) [B, T] -> last hidden state [B, T, width], as
    `GPT2Model(...)`'s: causal attention that also skips padded keys, positions 0..T-1."""

    def __init__(self, config: ClapTextConfig) -> None:
        super().__init__()
        self.wte = _embedding(config.vocab_size, config.width)
        self.wpe = _embedding(config.max_positions, config.width)
        self.h = nn.ModuleList(Gpt2Block(config) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(config.width, eps=LAYER_NORM_EPS)
        self.apply(_init_normal)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        t = input_ids.shape[1]
        positions = torch.arange(t, device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(positions)[None]
        past = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        allowed = past & (attention_mask[:, None, None, :] != 0)  # [B, 1, T, T]
        for block in self.h:
            x = block(x, allowed)
        return self.ln_f(x)
