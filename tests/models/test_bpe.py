"""The CLAP tokenizers against transformers' tokenizers, called exactly as the official code
calls them, on a small byte-level vocabulary written here."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from xsearch.models.bpe import ClapTokenizer, byte_level_vocab, bytes_to_unicode

# A few dozen merges in byte-level symbols ("Ġ" is a space), enough to merge inside words,
# across a leading space, over "!!", and inside the two bytes of "é".
MERGES = [
    ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("o", "u"), ("e", "r"),
    ("Ġ", "s"), ("Ġ", "d"), ("o", "g"), ("Ġd", "og"), ("a", "r"), ("Ġ", "b"), ("Ġb", "ar"),
    ("Ġbar", "k"), ("in", "g"), ("Ġ", "r"), ("a", "i"), ("Ġr", "ai"), ("Ġrai", "n"),
    ("Ġ", "c"), ("Ġc", "ar"), ("!", "!"), ("e", "d"), ("l", "l"), ("o", "w"), ("Ġ", "Ġ"),
    ("ĠĠ", "ĠĠ"), ("Ã", "©"), ("c", "af"), ("a", "f"), ("Ġ", "w"), ("Ġw", "ow"),
    ("'", "s"), ("1", "2"), ("Ċ", "Ċ"),
]  # fmt: skip

TEXTS = [
    "", "a", "dog barking", " leading space", "  two leading spaces", "trailing ",
    "rain on the car", "UPPER case Words", "wow!! so loud!", "!!!", "! starts with it",
    "café crème brûlée", "中文字符 and 日本語", "emoji 🐶🎵 sounds", "tabs\tand\nnew\n\nlines",
    "multiple     spaces", "numbers 12345 and 3.14", "it's can't we'll they'd", "ñandú",
    "combining é vs é", "\u00a0non-breaking", "mixed-case_and-dashes", "/path/like.wav",
    "a, b, c", 'quote "x" and (y)', "the dog and the bark of the dog",
    "a " * 120, "x" * 300, "🎵" * 40, "wow " * 30 + "!",
]  # fmt: skip


def write_vocabulary(folder, kind):
    """vocab.json + merges.txt: the 256 byte symbols, MERGES and the kind's special tokens,
    ordered as the real vocabularies are (RoBERTa: specials first; GPT-2: '!' is id 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    merged = [a + b for a, b in MERGES]
    if kind == "roberta":
        tokens = ["<s>", "<pad>", "</s>", "<unk>", *symbols, *merged, "<mask>"]
    else:
        tokens = [*symbols, *merged, "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    merges = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES)
    (folder / "merges.txt").write_text(merges, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def vocab_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bpe")
    return {kind: write_vocabulary(root / kind, kind) for kind in ("roberta", "gpt2")}


@pytest.mark.slow  # importing transformers' tokenizers takes seconds
@pytest.mark.parametrize("reference", ["RobertaTokenizer", "RobertaTokenizerFast"])
def test_roberta_matches_transformers_as_laion_calls_it(vocab_dirs, reference):
    transformers = pytest.importorskip("transformers")
    ref = getattr(transformers, reference).from_pretrained(str(vocab_dirs["roberta"]))
    # laion_clap hook.py: tokenizer(text, padding="max_length", truncation=True,
    # max_length=77, return_tensors="pt")
    want = ref(TEXTS, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    ids, mask = ClapTokenizer(vocab_dirs["roberta"], "roberta", 77)(TEXTS)
    assert ids.shape == (len(TEXTS), 77)
    for i, text in enumerate(TEXTS):
        assert ids[i].tolist() == want["input_ids"][i].tolist(), text
        assert mask[i].tolist() == want["attention_mask"][i].tolist(), text


@pytest.mark.slow
def test_gpt2_matches_transformers_as_msclap_calls_it(vocab_dirs):
    transformers = pytest.importorskip("transformers")
    ref = transformers.GPT2TokenizerFast.from_pretrained(str(vocab_dirs["gpt2"]))
    ref.add_special_tokens({"pad_token": "!"})  # CLAPWrapper.load_clap
    ours = ClapTokenizer(vocab_dirs["gpt2"], "gpt2", 77, max_positions=1024)
    for text in TEXTS:
        # CLAPWrapper.preprocess_text called encode_plus(text=..., add_special_tokens=True,
        # max_length=77, padding='max_length', return_tensors="pt"); transformers 5 dropped
        # encode_plus, and calling the tokenizer on one text is the same call.
        want = ref(
            text + " <|endoftext|>",
            add_special_tokens=True,
            max_length=77,
            padding="max_length",
            return_tensors="pt",
        )
        ids, mask = ours([text])
        assert ids[0].tolist() == want["input_ids"][0].tolist(), text
        assert mask[0].tolist() == want["attention_mask"][0].tolist(), text


def _merged(kind: str, merge: str) -> int:
    """The id of MERGES' result `merge` in write_vocabulary's layout."""
    first = 260 if kind == "roberta" else 256
    return first + [a + b for a, b in MERGES].index(merge)


def test_known_encodings(vocab_dirs):
    """Ids transformers gives for these (the slow tests compare them all), spelled out: merges
    apply by rank, RoBERTa wraps in <s> </s>, GPT-2 splits out every "!" (the pad token) and
    ends with " <|endoftext|>"."""
    w = 4 + (ord("w") - ord("!"))  # RoBERTa: 4 specials, then bytes in GPT-2's order
    roberta = ClapTokenizer(vocab_dirs["roberta"], "roberta", 77)
    ids, mask = roberta(["wow!! the dog", ""])
    r = functools.partial(_merged, "roberta")
    assert ids[0, :8].tolist() == [0, w, r("ow"), r("!!"), r("Ġthe"), r("Ġdog"), 2, 1]
    assert ids[1, :3].tolist() == [0, 2, 1] and mask.sum(1).tolist() == [7, 2]
    gpt2 = ClapTokenizer(vocab_dirs["gpt2"], "gpt2", 77)
    ids, mask = gpt2(["wow!! the dog", " the café"])
    g = functools.partial(_merged, "gpt2")
    space, end = 220, 256 + len(MERGES)  # "Ġ" is 220 as in GPT-2's own vocabulary
    assert ids[0, :9].tolist() == [w - 4, g("ow"), 0, 0, g("Ġthe"), g("Ġdog"), space, end, 0]
    # "Ġc" (rank 20) and "Ã©" (28) merge before "af" (30); "caf" (29) then never applies
    assert ids[1, :7].tolist() == [g("Ġthe"), g("Ġc"), g("af"), g("Ã©"), space, end, 0]
    assert mask.sum(1).tolist() == [8, 6]


def test_gpt2_keeps_long_texts_whole_and_pads_a_batch_to_its_longest(vocab_dirs):
    ours = ClapTokenizer(vocab_dirs["gpt2"], "gpt2", 77, max_positions=1024)
    ids, mask = ours(["x" * 300, "dog"])
    assert ids.shape == (2, 302)  # 300 bytes (no merge applies), " ", <|endoftext|>
    assert mask[0].all() and mask[1].sum() == 4  # "d", "og", " ", <|endoftext|>
    assert (ids[1, 4:] == 0).all()  # padded with "!" = id 0
    single, _ = ours(["dog"])
    assert single.shape == (1, 77) and (single[0] == ids[1, :77]).all()


def test_gpt2_cuts_at_the_position_limit_keeping_the_end_token(vocab_dirs):
    ours = ClapTokenizer(vocab_dirs["gpt2"], "gpt2", 77, max_positions=100)
    ids, mask = ours(["x" * 300])
    end = json.loads((vocab_dirs["gpt2"] / "vocab.json").read_text())["<|endoftext|>"]
    assert ids.shape == (1, 100) and mask.all() and ids[0, -1] == end


def test_roberta_truncates_to_the_context_keeping_both_ends(vocab_dirs):
    ids, mask = ClapTokenizer(vocab_dirs["roberta"], "roberta", 16)(["x" * 40, ""])
    assert ids.shape == (2, 16)
    assert ids[0, 0] == 0 and ids[0, -1] == 2 and mask[0].all()
    assert ids[1, :2].tolist() == [0, 2] and (ids[1, 2:] == 1).all() and mask[1].sum() == 2


@pytest.mark.parametrize("kind", ["roberta", "gpt2"])
def test_byte_level_vocabulary_encodes_any_text_one_token_per_byte(tmp_path, kind):
    folder = byte_level_vocab(tmp_path / kind, kind)
    vocab = json.loads((folder / "vocab.json").read_text())
    assert len(vocab) == 256 + (5 if kind == "roberta" else 1)
    ours = ClapTokenizer(folder, kind, 77, max_positions=1024)
    text = "héllo 🐶"
    ids, mask = ours([text])
    specials = 2  # <s> </s>, or " " <|endoftext|>
    assert mask.sum() == len(text.encode("utf-8")) + specials
    if kind == "gpt2":
        assert vocab["!"] == 0  # the pad token keeps GPT-2's id
    else:
        assert (vocab["<s>"], vocab["<pad>"], vocab["</s>"]) == (0, 1, 2)
    assert len(np.unique(ids[0, : mask.sum()])) > 4


def test_unknown_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="roberta or gpt2"):
        byte_level_vocab(tmp_path, "bert")
