"""AudioCLIP's text tower (CLIP's causal transformer) in NumPy, for text queries without torch.

Importing torch and open_clip costs seconds that a command-line query cannot pay; this reads the
official state-dict arrays (memory-mapped float32 is fine) and tests prove its embeddings equal
`AudioCLIP.encode_text`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

LAYER_KEY = re.compile(r"transformer\.resblocks\.(\d+)\.")
LN_EPS = np.float32(1e-5)
# A residual block's layers and their key stems (torch names the attention's input projection
# `in_proj_weight`, without a dot).
BLOCK_KEYS = {
    "ln_1": "ln_1.",
    "qkv": "attn.in_proj_",
    "out": "attn.out_proj.",
    "ln_2": "ln_2.",
    "fc": "mlp.c_fc.",
    "proj": "mlp.c_proj.",
}
# One residual block's layers: name -> (weight, bias).
Block = dict[str, tuple[np.ndarray, np.ndarray]]


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(np.square(centred), axis=-1, keepdims=True)
    return centred / np.sqrt(var + LN_EPS) * weight + bias


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """torch's nn.Linear (weight [out, in]), as one matrix product over all positions."""
    return (x.reshape(-1, x.shape[-1]) @ weight.T + bias).reshape(*x.shape[:-1], -1)


def _quick_gelu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(1.702 x), the activation OpenAI's CLIP was trained with; sigmoid written
    with tanh, which cannot overflow."""
    half = np.float32(0.5)
    return x * (half + half * np.tanh(np.float32(0.851) * x))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class NumpyTextTower:
    """Token id rows -> unnormalised text embeddings, as `AudioCLIP.encode_text` computes them.

    `arrays` maps the official key names (`token_embedding.weight`, `positional_embedding`,
    `transformer.resblocks.{i}.*`, `ln_final.*`, `text_projection`) to arrays; other keys are
    ignored. `heads` is the number of attention heads (the arrays do not record it).
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], heads: int) -> None:
        def get(key: str) -> np.ndarray:
            return np.asarray(arrays[key], dtype=np.float32)  # no copy when already float32

        self.heads = heads
        self.token_embedding = get("token_embedding.weight")
        self.positional_embedding = get("positional_embedding")
        self.ln_final = get("ln_final.weight"), get("ln_final.bias")
        self.text_projection = get("text_projection")
        layers = {int(m.group(1)) for k in arrays if (m := LAYER_KEY.match(k))}
        prefix = "transformer.resblocks."
        self.blocks: list[Block] = [
            {
                n: (get(f"{prefix}{i}.{stem}weight"), get(f"{prefix}{i}.{stem}bias"))
                for n, stem in BLOCK_KEYS.items()
            }
            for i in sorted(layers)
        ]

    @property
    def embed_dim(self) -> int:
        return int(self.text_projection.shape[1])

    def encode(self, rows: list[list[int]]) -> np.ndarray:
        """Rows of token ids (start and end tokens included) -> [n, embed_dim] float32."""
        if not rows:
            return np.zeros((0, self.embed_dim), np.float32)
        length = max(len(r) for r in rows)
        # Zeros after a row's end token cannot reach it: attention is causal.
        tokens = np.zeros((len(rows), length), np.int64)
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = row
        x = self.token_embedding[tokens] + self.positional_embedding[:length]
        mask = np.triu(np.full((length, length), -np.inf, np.float32), 1)
        for block in self.blocks:
            x = x + self._attention(_layer_norm(x, *block["ln_1"]), block, mask)
            h = _quick_gelu(_linear(_layer_norm(x, *block["ln_2"]), *block["fc"]))
            x = x + _linear(h, *block["proj"])
        # The end token has the largest id (CLIP reads the embedding there).
        ends = x[np.arange(len(rows)), tokens.argmax(axis=1)]
        return (_layer_norm(ends, *self.ln_final) @ self.text_projection).astype(np.float32)

    def _attention(self, x: np.ndarray, block: Block, mask: np.ndarray) -> np.ndarray:
        n, length, width = x.shape
        head = width // self.heads
        qkv = _linear(x, *block["qkv"]).reshape(n, length, 3, self.heads, head)
        q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # each [n, heads, length, head]
        scores = (q * np.float32(head**-0.5)) @ k.transpose(0, 1, 3, 2) + mask
        out = (_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(n, length, width)
        return _linear(out, *block["out"])
