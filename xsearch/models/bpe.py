"""The CLAP text tokenizers, built with the `tokenizers` library from `vocab.json` and
`merges.txt` (byte-level BPE), giving the ids and masks the official code feeds its models.

- "roberta" (LAION-CLAP, `RobertaTokenizer` called with padding="max_length",
  truncation=True, max_length=77): `<s> ... </s>`, cut to the context length, padded with
  `<pad>` (id 1), mask 1 on tokens and 0 on padding.
- "gpt2" (Microsoft CLAP, `CLAPWrapper.preprocess_text`): the text plus " <|endoftext|>",
  with "!" registered as the pad token (id 0 in GPT-2's vocabulary, and from then on split
  out of the text as a token of its own), padded with it to the context length. The call
  passes max_length without truncation=True, and with padding="max_length" transformers does
  not truncate then: a longer text keeps all its tokens. So does this, up to GPT-2's position
  limit, where it keeps the first tokens and the closing <|endoftext|> (the official code
  fails there). A batch is padded to its longest row, which changes no row's embedding (GPT-2
  is causal and MS CLAP reads a row's last text token).

`byte_level_vocab` writes a minimal vocabulary (the 256 byte symbols and the special tokens,
no merges) for models with random weights: every text encodes, one token per byte. Its ids are
as meaningless as the random weights; it is never used with a checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

KINDS = ("roberta", "gpt2")
FILES = ("vocab.json", "merges.txt")

ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0-3 in RoBERTa's vocabulary
ROBERTA_MASK = "<mask>"
GPT2_END = "<|endoftext|>"
GPT2_PAD = "!"  # msclap's pad token; GPT-2's id 0


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to printable characters, in vocabulary order:
    printable Latin-1 bytes stand for themselves, the rest take code points from 256 up."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def has_vocabulary(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES)


def byte_level_vocab(folder: str | Path, kind: str) -> Path:
    """Write a minimal `kind` vocabulary into `folder` (created if need be): the 256 byte
    symbols and the special tokens, no merges. For random weights only: meaningless ids."""
    _check_kind(kind)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    if kind == "roberta":
        tokens = [*ROBERTA_SPECIALS, *symbols, ROBERTA_MASK]
    else:
        tokens = [*symbols, GPT2_END]  # "!" comes first: id 0, as in GPT-2's vocabulary
    vocab = {token: i for i, token in enumerate(tokens)}
    # Write aside and rename, so a concurrent reader never sees half a file.
    for name, text in (("vocab.json", json.dumps(vocab)), ("merges.txt", "#version: 0.2\n")):
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(folder / name)
    return folder


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; use {' or '.join(KINDS)}")


class ClapTokenizer:
    """Texts -> (ids, attention mask), int64 arrays [n, length], for one CLAP text tower."""

    def __init__(
        self,
        folder: str | Path,
        kind: str,
        context_length: int = 77,
        max_positions: int | None = None,
    ) -> None:
        """`folder` holds vocab.json and merges.txt. `max_positions` (GPT-2 only) bounds
        the tokens of a row, the model's position limit; None keeps every token, as the
        official call does."""
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

        _check_kind(kind)
        folder = Path(folder)
        self.kind, self.context_length = kind, context_length
        self.max_positions = max_positions
        tok = Tokenizer(
            models.BPE.from_file(
                str(folder / "vocab.json"),
                str(folder / "merges.txt"),
                continuing_subword_prefix="",
                end_of_word_suffix="",
                fuse_unk=False,
            )
        )
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        vocab = tok.get_vocab()

        def special(text: str, lstrip: bool = False) -> AddedToken:
            return AddedToken(text, lstrip=lstrip, rstrip=False, normalized=False, special=True)

        if kind == "roberta":
            tok.add_special_tokens(
                [special(t) for t in ROBERTA_SPECIALS] + [special(ROBERTA_MASK, lstrip=True)]
            )
            self.pad_id = vocab["<pad>"]
            tok.post_processor = processors.RobertaProcessing(
                ("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]), trim_offsets=True
            )
            tok.enable_truncation(max_length=context_length)
        else:
            tok.add_special_tokens([special(GPT2_END), special(GPT2_PAD)])
            self.pad_id = vocab[GPT2_PAD]
            self.end_id = vocab[GPT2_END]
        self._tokenizer = tok

    def rows(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids, special tokens included, without padding."""
        if self.kind == "roberta":
            return [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        rows = []
        for e in self._tokenizer.encode_batch([f"{t} {GPT2_END}" for t in texts]):
            ids = e.ids
            if self.max_positions is not None and len(ids) > self.max_positions:
                ids = [*ids[: self.max_positions - 1], self.end_id]
            rows.append(ids)
        return rows

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, mask) int64 [n, length]: length is the context length, or for GPT-2 the
        longest row when longer; padding has the pad id and mask 0."""
        rows = self.rows(texts)
        length = max([self.context_length, *map(len, rows)])
        ids = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask
