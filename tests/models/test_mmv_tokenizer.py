"""MMV's word tokenizer gives DMVR's WordTokenizer ids, without TensorFlow.

`tests/data/golden_mmv_tokens.json` holds made-up vocabularies (one word a line, and the
sparse "id word" form), sentences, and the ids DMVR's in-graph
`WordTokenizer.string_tensor_to_indices` gave for them (google-deepmind/dmvr 77cceda,
tensorflow 2.21.0, tensorflow-text 2.21.1) with and without <bos>/<eos>, cut at 16, at 5,
and padded to the longest.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from xsearch.errors import CheckpointError
from xsearch.models import mmv_tokenizer
from xsearch.models.mmv_tokenizer import WordTokenizer, read_vocabulary, words

GOLDEN = Path(__file__).parent.parent / "data" / "golden_mmv_tokens.json"


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def write_vocabulary(path: Path, lines: list[str], end: str = "\n") -> Path:
    path.write_bytes((end.join(lines) + end).encode("utf-8"))
    return path


@pytest.fixture(scope="module")
def tokenizers(golden, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab")
    return {
        name: WordTokenizer.from_file(write_vocabulary(folder / f"{name}.txt", vocab["lines"]))
        for name, vocab in golden["vocabularies"].items()
    }


@pytest.mark.parametrize("name", ["plain", "indexed"])
def test_ids_match_dmvr(golden, tokenizers, name):
    vocab, tokenizer = golden["vocabularies"][name], tokenizers[name]
    specials = (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id)
    assert specials == (vocab["pad"], vocab["bos"], vocab["eos"], vocab["unk"])
    for result in vocab["results"]:
        got = tokenizer.ids(
            golden["sentences"],
            result["max_num_tokens"],
            prepend_bos=result["prepend_bos"],
            append_eos=result["append_eos"],
        )
        assert got.dtype == np.int64
        expected = np.array(result["ids"], dtype=np.int64)
        assert got.shape == expected.shape
        for sentence, row, want in zip(golden["sentences"], got, expected):
            assert row.tolist() == want.tolist(), (sentence, result)


def test_vocab_size(golden, tokenizers):
    for name, vocab in golden["vocabularies"].items():
        assert tokenizers[name].vocab_size == vocab["vocab_size"] == len(vocab["lines"])


def test_read_vocabulary_gives_words_in_id_order(golden, tmp_path):
    lines = golden["vocabularies"]["indexed"]["lines"]  # "id word", ids out of order
    words = read_vocabulary(write_vocabulary(tmp_path / "v.txt", lines))
    assert words == ["dog", "<eos>", "the", "<pad>", "in", "rain", "<unk>", "<bos>"]
    assert WordTokenizer(words).ids(["The dog"], 4).tolist() == [[2, 0, 3, 3]]
    with pytest.raises(CheckpointError, match="lacks <unk>"):
        WordTokenizer(["<pad>", "<bos>", "<eos>", "dog"])
    with pytest.raises(CheckpointError, match="twice"):
        WordTokenizer(["<pad>", "<bos>", "<eos>", "<unk>", "dog", "dog"])
    with pytest.raises(TypeError):
        WordTokenizer("<pad>")


def test_multibyte_white_space_splits_cleanly(golden, tokenizers):
    """tensorflow_text 2.21 leaves a multi-byte space's leading bytes on the word before it
    (recorded in the golden); the split here is clean, a deliberate difference."""
    record = golden["tf_text_multibyte_whitespace"]
    assert record["tf_tokens_utf8_hex"][0] == [b"the".hex() + "e380", b"dog".hex()]
    assert [words(s) for s in record["sentences"]] == [
        ["the", "dog"],
        ["dog", "in", "the", "rain"],
        ["rain", "now"],
        ["a", "dog"],
    ]
    ours = tokenizers["plain"].ids(record["sentences"])
    theirs = np.array(record["tf_ids_plain"])
    assert ours[:, :4].tolist() == [[8, 5, 0, 0], [5, 7, 8, 9], [9, 3, 0, 0], [4, 5, 0, 0]]
    # TF's rows differ only where a word touched a multi-byte space (it became <unk>, 3).
    assert np.all((ours == theirs) | (theirs == 3))


def test_normalisation():
    expected = ["a", "dog", "barking", "in", "the", "rain"]
    assert words("A Dog, BARKING!  in\tthe\nrain...") == expected
    assert words("don't «Café» ÉÀ") == ["dont", "«café»", "ÉÀ"]  # ASCII punctuation, ASCII case
    assert words("a\x1cb c\x1fd e\x0bf") == ["a\x1cb", "c\x1fd", "e", "f"]
    assert words("") == [] and words(" \t\r\n ") == []


def test_ids_shapes(tokenizers):
    tokenizer = tokenizers["plain"]
    assert tokenizer.ids([]).shape == (0, 16)
    assert tokenizer.ids(["dog"], length=0).shape == (1, 0)
    assert tokenizer.ids(["", ""], length=None).shape == (2, 0)
    assert tokenizer.ids(["dog"], append_eos=True, length=1).tolist() == [[5]]  # <eos> is cut
    assert tokenizer.encode("the dog", prepend_bos=True, append_eos=True) == [1, 8, 5, 2]
    with pytest.raises(TypeError):
        tokenizer.ids("dog")
    with pytest.raises(ValueError):
        tokenizer.ids(["dog"], length=-1)


def test_hashed_vocabulary():
    tokenizer = WordTokenizer.hashed(65536)
    assert tokenizer.is_hashed
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id) == (0, 1, 2, 3)
    assert tokenizer.vocab_size == 65536
    ids = tokenizer.ids(["A dog, barking!", "the DOG"], prepend_bos=True, append_eos=True)
    a, dog, barking = (4 + zlib.crc32(word) % 65532 for word in (b"a", b"dog", b"barking"))
    assert ids[0, :5].tolist() == [1, a, dog, barking, 2]
    assert ids[1, 2] == dog and not ids[0, 5:].any()
    # pinned, so that a change of the hash is seen: stored embeddings would silently move
    assert tokenizer.word_id("dog") == 15929 and tokenizer.word_id("café") == 42357
    assert tokenizer.word_id("\ud800") >= 4  # a lone surrogate still hashes
    vocabulary = [f"w{i}" for i in range(20000)]
    small = WordTokenizer.hashed(5)  # every word lands on the one non-special id
    assert {small.word_id(word) for word in vocabulary[:50]} == {4}
    assert all(4 <= tokenizer.word_id(word) < 65536 for word in vocabulary)
    for bad in (4, 0, -1, True, 6.0):
        with pytest.raises(ValueError):
            WordTokenizer.hashed(bad)


def test_file_formats(tmp_path):
    lines = ["<pad>", "<bos>", "<eos>", "<unk>", "dog"]
    crlf = read_vocabulary(write_vocabulary(tmp_path / "crlf.txt", lines, end="\r\n"))
    assert crlf == lines
    (tmp_path / "no_end.txt").write_text("\n".join(lines), encoding="utf-8")
    assert read_vocabulary(tmp_path / "no_end.txt") == crlf
    # a blank line is the word "" at that line's id, as DMVR reads it
    blank = read_vocabulary(write_vocabulary(tmp_path / "blank.txt", [*lines[:4], "", "dog"]))
    assert blank[4:] == ["", "dog"]
    padded = write_vocabulary(tmp_path / "pad.txt", ["  <pad> ", "<bos>", "<eos>", "<unk>"])
    assert read_vocabulary(padded)[0] == "<pad>"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<pad>\n<bos>\n<eos>\n<unk>\n\xff\xfe\n", "not UTF-8 text"),
        (b"<pad>\n<bos>\n<eos>\n<unk>\ndog\x00\n", "NUL"),
        (b"<pad>\n<bos>\n<eos>\n<unk>\n1 2 3\n", "line 5 is not"),
        (b"<pad>\n<bos>\n<eos>\n<unk>\na  b\n", "line 5 is not"),
        (b"<pad>\n<bos>\n<eos>\n<unk>\nx dog\n", "not an integer"),
        (b"<pad>\n<bos>\n<eos>\n<unk>\n2 dog\n", "repeats id 2"),
        (b"<pad>\n<bos>\n<eos>\n<unk>\n-5 dog\n", "ids must run from 0 to 4, one per word; -5"),
        (b"<pad>\n<bos>\n<eos>\n<unk>\n9 dog\n", "ids must run from 0 to 4, one per word; 9"),
        (b"<pad>\n<bos>\n<eos>\n<unk>\nDog\n", "not lower case"),
        (b"<pad>\n<bos>\n<eos>\n<unk>\ndog\ndog\n", "appears twice"),
        (b"<pad>\n<bos>\n<eos>\ndog\n", "lacks <unk>"),
        (b"", "lacks <pad>, <bos>, <eos>, <unk>"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "vocab.txt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as caught:
        WordTokenizer.from_file(path)
    assert "\n" not in str(caught.value)


def test_size_limit_and_missing_file(tmp_path, monkeypatch):
    path = write_vocabulary(tmp_path / "vocab.txt", ["<pad>", "<bos>", "<eos>", "<unk>", "dog"])
    monkeypatch.setattr(mmv_tokenizer, "MAX_VOCAB_BYTES", path.stat().st_size - 1)
    with pytest.raises(CheckpointError, match="too big") as caught:
        WordTokenizer.from_file(path)
    assert "\n" not in str(caught.value)
    monkeypatch.setattr(mmv_tokenizer, "MAX_VOCAB_BYTES", path.stat().st_size)
    assert WordTokenizer.from_file(path).word_id("dog") == 4
    with pytest.raises(CheckpointError, match="cannot read"):
        WordTokenizer.from_file(tmp_path / "absent.txt")
    with pytest.raises(CheckpointError, match="cannot read"):
        WordTokenizer.from_file(tmp_path)
