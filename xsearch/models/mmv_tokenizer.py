"""MMV's word tokenizer: DMVR's `WordTokenizer` as its input pipeline runs it, without TensorFlow.

DMVR's `modalities.add_text` tokenizes captions in-graph with
`WordTokenizer.string_tensor_to_indices`; the steps, reproduced here exactly, are:

1. delete every ASCII punctuation character (RE2's `[[:punct:]]`, the 32 characters of
   `string.punctuation`); other punctuation (« » ’ ¿ …) stays, inside its word;
2. lower-case ASCII letters only (`tf.strings.lower` without an encoding): "É" stays "É";
3. with `prepend_bos` / `append_eos`, add `<bos>` / `<eos>` (both off in `add_text`);
4. split on ICU white space (tensorflow_text's WhitespaceTokenizer): Python's white space
   less U+001C..U+001F; runs of white space make no empty words. One deliberate difference:
   tensorflow_text 2.21 leaves all but the last byte of a multi-byte white-space character
   (U+0085, U+00A0, U+2009, U+3000...) on the word before it, so that word becomes `<unk>`;
   that is a byte-offset bug of that release (which release MMV ran is unknown), and the
   split here is clean (see `tf_text_multibyte_whitespace` in tests/data/golden_mmv_tokens.json);
5. look each word up in the vocabulary, `<unk>`'s id when absent;
6. keep the first `length` ids (so a cut sentence loses its `<eos>`) and pad with `<pad>`'s id.

DMVR's pure-Python `string_to_indices` differs (Unicode lower-casing, splitting on single
spaces, so "a  b" gives an `<unk>` for the empty word); the pipeline does not use it.

The vocabulary file is DMVR's format: UTF-8 text, one entry per line, either `word` (its id
is the line number, from 0) or `id word` separated by one space; every word lower-case and
unique, every id unique, and the four words `<pad>`, `<bos>`, `<eos>`, `<unk>` present.
Lines end at "\n" only; each is stripped of white space at both ends first (so "\r\n" line
ends work, and a blank line is the word "" at that line's id, as in DMVR). Two deviations,
both refusals: the ids must be 0..n-1 in some order (DMVR also takes gaps and negative ids,
which no embedding table has), and the file must be at most 50 MB of UTF-8 without NUL
bytes. `vocab_size` is the number of words, as in DMVR.

Not confirmed for MMV: which vocabulary it used (its JAX release embeds 65536 words of 300
dimensions but ships no vocabulary), whether it added `<bos>`/`<eos>`, and that it cut at
16 words (`add_text`'s default, and the word count of the JAX release's dummy input).

Without a vocabulary, `WordTokenizer.hashed(vocab_size)` gives every word the id
4 + crc32(utf-8 word) mod (vocab_size - 4), for models with random weights; ids 0..3 stay
`<pad>`, `<bos>`, `<eos>`, `<unk>` (the order of DMVR's test vocabulary).
"""

from __future__ import annotations

import re
import string
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xsearch.errors import CheckpointError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_WORDS = (PAD, BOS, EOS, UNK)
MAX_VOCAB_BYTES = 50 * 1024 * 1024
CONTEXT_LENGTH = 16

_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# ICU's White_Space property, which tensorflow_text's WhitespaceTokenizer splits on.
_ICU_WHITE_SPACE = re.compile(
    "[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"
)


def normalise(text: str) -> str:
    """The text as DMVR's tokenizer sees it: ASCII punctuation deleted, ASCII lower-cased."""
    return text.translate(_DROP_PUNCTUATION).translate(_ASCII_LOWER)


def words(text: str) -> list[str]:
    """The words of `text`, as DMVR splits them (no empty words)."""
    return [word for word in _ICU_WHITE_SPACE.split(normalise(text)) if word]


class WordTokenizer:
    """Words to ids, from a DMVR vocabulary file (`from_file`) or by hashing (`hashed`)."""

    def __init__(self, words: Sequence[str]) -> None:
        """A vocabulary in id order (`words[i]` has id i), as `read_vocabulary` returns it:
        distinct words, `<pad>`, `<bos>`, `<eos>` and `<unk>` among them; CheckpointError,
        in one line, otherwise (it comes from a file or a converted checkpoint)."""
        if isinstance(words, str):
            raise TypeError("WordTokenizer takes a list of words, not one string")
        words = list(words)
        self._word_ids = {word: index for index, word in enumerate(words)}
        if len(self._word_ids) != len(words):
            raise CheckpointError("the vocabulary has a word twice")
        missing = [word for word in SPECIAL_WORDS if word not in self._word_ids]
        if missing:
            raise CheckpointError(f"the vocabulary lacks {', '.join(missing)}")
        self._hash_buckets: int | None = None
        self.vocab_size = len(words)
        self.pad_id = self._word_ids[PAD]
        self.bos_id = self._word_ids[BOS]
        self.eos_id = self._word_ids[EOS]
        self.unk_id = self._word_ids[UNK]

    @classmethod
    def from_file(cls, path: str | Path) -> WordTokenizer:
        """The vocabulary of a DMVR word-vocabulary file (see the module docstring).
        CheckpointError, in one line, for a file that is too big, not UTF-8 text, or not a
        valid vocabulary."""
        return cls(read_vocabulary(path))

    @classmethod
    def hashed(cls, vocab_size: int) -> WordTokenizer:
        """Ids by crc32 for models without a vocabulary: 0..3 are `<pad>`, `<bos>`, `<eos>`,
        `<unk>`; a word's id is 4 + crc32(word) mod (vocab_size - 4), never one of those."""
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= 4:
            raise ValueError(f"a hashed vocabulary needs vocab_size > 4, got {vocab_size!r}")
        tokenizer = cls(SPECIAL_WORDS)
        tokenizer._hash_buckets = vocab_size - len(SPECIAL_WORDS)
        tokenizer.vocab_size = vocab_size
        return tokenizer

    @property
    def is_hashed(self) -> bool:
        return self._hash_buckets is not None

    def word_id(self, word: str) -> int:
        """The id of one already normalised word."""
        known = self._word_ids.get(word)
        if known is not None:
            return known
        if self._hash_buckets is None:
            return self.unk_id
        digest = zlib.crc32(word.encode("utf-8", "surrogatepass"))
        return len(SPECIAL_WORDS) + digest % self._hash_buckets

    def encode(
        self, text: str, *, prepend_bos: bool = False, append_eos: bool = False
    ) -> list[int]:
        """The ids of `text`, neither cut nor padded."""
        ids = [self.word_id(word) for word in words(text)]
        return [self.bos_id] * prepend_bos + ids + [self.eos_id] * append_eos

    def ids(
        self,
        texts: Sequence[str],
        length: int | None = CONTEXT_LENGTH,
        *,
        prepend_bos: bool = False,
        append_eos: bool = False,
    ) -> np.ndarray:
        """int64 [len(texts), length]: each text's ids, cut to `length` and padded with the
        pad id (`length=None`: padded to the longest, as DMVR with max_num_tokens=None)."""
        if isinstance(texts, str):
            raise TypeError("ids takes a list of texts, not one string")
        rows = [self.encode(text, prepend_bos=prepend_bos, append_eos=append_eos) for text in texts]
        if length is None:
            length = max((len(row) for row in rows), default=0)
        elif isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(f"length must be a non-negative integer, got {length!r}")
        out = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        for index, row in enumerate(rows):
            row = row[:length]
            out[index, : len(row)] = row
        return out


def read_vocabulary(path: str | Path, max_bytes: int | None = None) -> list[str]:
    """The words of a DMVR word-vocabulary file in id order (word i has id i), validated as
    DMVR validates it, and the ids must be 0..n-1 (an embedding table's rows). Files over
    `max_bytes` (default MAX_VOCAB_BYTES) are refused. CheckpointError, in one line."""
    path = Path(path)
    if max_bytes is None:
        max_bytes = MAX_VOCAB_BYTES
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise CheckpointError(f"{path}: cannot read the vocabulary ({reason})") from None
    if len(data) > max_bytes:
        raise CheckpointError(
            f"{path}: over {max_bytes // (1024 * 1024)} MB, too big for a word vocabulary"
        )
    if b"\0" in data:
        raise CheckpointError(f"{path}: not a plain text vocabulary (it holds NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CheckpointError(
            f"{path}: not UTF-8 text (invalid byte at offset {error.start})"
        ) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another
    id_words: dict[int, str] = {}
    for number, line in enumerate(lines):
        fields = line.strip().split(" ")
        if len(fields) not in (1, 2):
            raise CheckpointError(f"{path}: line {number + 1} is not 'word' or 'id word'")
        if len(fields) == 2:
            try:
                index = int(fields[0])
            except ValueError:
                raise CheckpointError(
                    f"{path}: line {number + 1} has id {fields[0]!r}, not an integer"
                ) from None
            word = fields[1]
        else:
            index, word = number, fields[0]
        if index in id_words:
            raise CheckpointError(f"{path}: line {number + 1} repeats id {index}")
        if word != word.lower():
            raise CheckpointError(f"{path}: line {number + 1} has {word!r}, not lower case")
        id_words[index] = word
    if len(set(id_words.values())) != len(id_words):
        raise CheckpointError(f"{path}: a word appears twice")
    missing = [word for word in SPECIAL_WORDS if word not in id_words.values()]
    if missing:
        raise CheckpointError(f"{path}: the vocabulary lacks {', '.join(missing)}")
    outside = sorted(index for index in id_words if not 0 <= index < len(id_words))
    if outside:
        raise CheckpointError(
            f"{path}: ids must run from 0 to {len(id_words) - 1}, one per word; "
            f"{outside[0]} does not"
        )
    return [id_words[index] for index in range(len(id_words))]
