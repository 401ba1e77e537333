"""Small byte-level BPE vocabularies in the RoBERTa and GPT-2 layouts, for tokenizer tests.

The real vocabularies (50,265 and 50,257 entries) cannot be fetched in tests. These keep
what matters for reproducing the official tokenizers: the 256 byte symbols in GPT-2's order
(so "!" is id 0 in the GPT-2 layout, as msclap's pad token relies on), the special tokens at
their real ids (RoBERTa: <s> 0, <pad> 1, </s> 2, <unk> 3, <mask> last; GPT-2: <|endoftext|>
last), and a few dozen merges whose priorities interact: chains (t+h, th+e, Ġ+the), merges
that compete for the same pair, merges across multi-byte UTF-8 characters, digits, a
newline symbol and an apostrophe.

`write_vocab(folder, kind)` writes `vocab.json` and `merges.txt` as the official files are
laid out; both are deterministic, so token ids computed with them can be stored.
"""

from __future__ import annotations

import json
from pathlib import Path

from xsearch.models.bpe import bytes_to_unicode

KINDS = ("roberta", "gpt2")

# Merge order is priority: earlier merges win. Written in byte-level symbols: "Ġ" is a space,
# "Ċ" a newline, "Ã" + "©" the two bytes of "é", "ð" "Ł" "Ĳ" "¶" the four of a dog emoji.
MERGES = [
    "Ġ t",
    "h e",
    "Ġt he",
    "Ġ a",
    "i n",
    "e r",
    "o n",
    "Ġ s",
    "Ġ d",
    "o g",
    "Ġd og",
    "a r",
    "Ġ b",
    "Ġb ar",
    "k in",
    "kin g",
    "Ġbar king",
    "Ġ r",
    "a in",
    "Ġr ain",
    "Ġ o",
    "Ġo n",
    "Ġ c",
    "a f",
    "Ġc af",
    "Ã ©",
    "Ġcaf Ã©",
    "Ġ 1",
    "0 0",
    "Ġ1 00",
    "' s",
    "Ġ Ċ",
    "Ċ Ċ",
    "ð Ł",
    "ðŁ Ĳ",
    "ðŁĲ ¶",
    "ðŁ Ķ",
    "Ġs in",
    "Ġsin g",
    "i r",
    "s ir",
    "e n",
    "sir en",
    "Ġ w",
    "Ġw in",
    "Ġwin d",
    "T he",
    "Ġ A",
    "L A",
    "Ġa n",
]


def vocabulary(kind: str) -> dict[str, int]:
    """Token -> id for `kind` ("roberta" or "gpt2")."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    tokens = list(bytes_to_unicode().values()) + ["".join(m.split(" ")) for m in MERGES]
    if kind == "roberta":
        tokens = ["<s>", "<pad>", "</s>", "<unk>", *tokens, "<mask>"]
    else:
        tokens = [*tokens, "<|endoftext|>"]
    assert len(set(tokens)) == len(tokens), "a merge result repeats a token"
    return {token: i for i, token in enumerate(tokens)}


def write_vocab(folder: str | Path, kind: str) -> Path:
    """Write `vocab.json` and `merges.txt` of `kind` into `folder` (created); returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(
        json.dumps(vocabulary(kind), ensure_ascii=False), encoding="utf-8"
    )
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n", "utf-8")
    return folder
