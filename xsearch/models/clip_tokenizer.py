"""CLIP's byte-pair tokenizer, without torch: the ids `open_clip`'s `SimpleTokenizer` gives.

Importing open_clip (and with it torch) costs seconds that a command-line query cannot pay, so
the tokenizer is written out here over the vocabulary file open_clip ships; tests prove its
ids equal open_clip's.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import warnings
from collections.abc import Sequence
from functools import cache
from itertools import islice, pairwise
from pathlib import Path

import regex

from xsearch.errors import UsageError

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2  # CLIP's vocabulary: 2 x 256 byte symbols, these merges, 2 specials
SPECIAL_TOKENS = ("<start_of_text>", "<end_of_text>")
END_OF_WORD = "</w>"
# Specials first, then contractions, letter runs, single digits and other non-space runs.
WORD_PATTERN = "|".join(SPECIAL_TOKENS) + r"|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+"
# Text ftfy leaves as it is: printable ASCII, tabs and newlines, without HTML entities (&), the
# control characters it removes or the \r it rewrites. Tests check the claim against ftfy.
PLAIN_TEXT = regex.compile(r"[\x20-\x25\x27-\x7e\t\n]*")


class TextTruncatedWarning(UserWarning):
    """A text was longer than the model's context and was cut."""


def join_labels(text: str | Sequence[str]) -> str:
    """A label list becomes one text, joined with ', ' as AudioCLIP encodes a label set."""
    return text if isinstance(text, str) else ", ".join(text)


def vocab_path() -> Path:
    """The BPE merges file inside the installed open_clip wheel, found without importing it
    (its package imports torch)."""
    spec = importlib.util.find_spec("open_clip")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / VOCAB_FILE
        if path.is_file():
            return path
    raise UsageError(
        f"text queries need CLIP's vocabulary ({VOCAB_FILE}), which ships with open_clip: "
        "install it with `pip install open_clip_torch`"
    )


def _byte_symbols() -> tuple[list[str], dict[int, str]]:
    """GPT-2's reversible byte alphabet: printable Latin-1 bytes stand for themselves, the
    others for the characters from 256 on, in byte order. Returns the symbols in vocabulary
    order (printable bytes first) and the byte -> symbol table."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    others = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(others)}
    return [table[b] for b in printable + others], table


class ClipTokenizer:
    """Text -> CLIP BPE ids, without start and end tokens (`SimpleTokenizer.encode`)."""

    def __init__(self, path: str | Path | None = None) -> None:
        # A header line, then the merges by rank, one a line: two symbols and a space. Only the
        # first N_MERGES are used, so only they are decompressed.
        with gzip.open(path or vocab_path(), "rt", encoding="utf-8") as lines:
            next(lines)
            merges = [line.rstrip("\n") for line in islice(lines, N_MERGES)]
        symbols, self.byte_table = _byte_symbols()
        vocab = [*symbols, *(s + END_OF_WORD for s in symbols)]
        vocab += [m.replace(" ", "") for m in merges] + list(SPECIAL_TOKENS)
        self.ids = dict(zip(vocab, range(len(vocab))))
        self.ranks = dict(zip(merges, range(N_MERGES)))  # "a b" -> rank: lower merges first
        self.pattern = regex.compile(WORD_PATTERN, regex.IGNORECASE)
        self.sot_token_id = self.ids[SPECIAL_TOKENS[0]]
        self.eot_token_id = self.ids[SPECIAL_TOKENS[1]]
        # Word (as byte symbols) -> ids; special tokens are never split.
        self.cache: dict[str, list[int]] = {t: [self.ids[t]] for t in SPECIAL_TOKENS}

    @staticmethod
    def clean(text: str) -> str:
        """ftfy, HTML entities (twice, for double-escaped text), one space between words,
        lower case: CLIP's `lower` cleaning."""
        if not PLAIN_TEXT.fullmatch(text):
            import ftfy  # ~0.15 s to import; a no-op on plain text, so loaded only when needed

            text = ftfy.fix_text(text)
        text = html.unescape(html.unescape(text)).strip()
        return " ".join(text.split()).lower()

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for word in self.pattern.findall(self.clean(text)):
            # UTF-8 bytes, read as Latin-1, become their symbols in one str.translate.
            out += self.word_ids(word.encode("utf-8").decode("latin-1").translate(self.byte_table))
        return out

    def word_ids(self, word: str) -> list[int]:
        """Merge a word's symbols, lowest-ranked pair first, until no known pair is left."""
        if word in self.cache:
            return self.cache[word]
        parts = [*word[:-1], word[-1] + END_OF_WORD]
        while len(parts) > 1:
            pairs = [f"{a} {b}" for a, b in pairwise(parts)]
            best = min(pairs, key=lambda p: self.ranks.get(p, N_MERGES))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):  # every occurrence, left to right, without overlap
                if i + 1 < len(parts) and pairs[i] == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = self.cache[word] = [self.ids[p] for p in parts]
        return ids


@cache
def clip_tokenizer() -> ClipTokenizer:
    """The tokenizer, built once per process."""
    return ClipTokenizer()


def token_rows(texts: Sequence[str | Sequence[str]], context_length: int = 77) -> list[list[int]]:
    """Each text's ids with start and end tokens (label lists joined by `join_labels`).

    Over-long texts keep their first `context_length - 1` tokens plus the end token, with a
    warning.
    """
    tok = clip_tokenizer()
    rows = []
    for text in texts:
        text = join_labels(text)
        ids = [tok.sot_token_id, *tok.encode(text), tok.eot_token_id]
        if len(ids) > context_length:
            preview = text if len(text) <= 40 else text[:37] + "..."
            warnings.warn(
                f"text truncated to {context_length} tokens: {preview!r}",
                TextTruncatedWarning,
                stacklevel=2,
            )
            ids = [*ids[: context_length - 1], tok.eot_token_id]
        rows.append(ids)
    return rows
