"""The torch-free CLIP tokenizer gives open_clip's ids, and `tokenize` still gives CLIP's rows."""

from __future__ import annotations

import importlib.util
import random
import warnings

import pytest
import torch

from xsearch.errors import UsageError
from xsearch.models import clip_tokenizer
from xsearch.models.clip_tokenizer import (
    PLAIN_TEXT,
    ClipTokenizer,
    TextTruncatedWarning,
    token_rows,
)
from xsearch.models.preprocess import tokenize

CORPUS = [
    "",
    "   ",
    "\t\n\r\n ",
    "dog",
    "A Dog BARKING in the rain",
    "rain on a tin roof, then thunder!!!",
    "don't I'LL you'd we've they're it's I'm",
    "café crème brûlée, naïve façade, Ångström, ß, İstanbul",
    "Ελληνικά και Русский текст, עברית, العربية",
    "犬の鳴き声と雨の音 狗叫声 개 짖는 소리",
    "🐶🔊 dog 🐕‍🦺 barks 👍🏽 🇫🇷",
    "Tom &amp; Jerry &lt;b&gt;bold&lt;/b&gt; &amp;amp;lt; &quot;quoted&quot; &#39;x&#39;",
    "<b>tags</b> & entities &amp; stay when < is present",
    "cafÃ© crÃ¨me â€œquotedâ€\x9d Ã¼ber",  # mojibake ftfy repairs
    "ｆｕｌｌｗｉｄｔｈ ＴＥＸＴ and ﬁne ligatures",
    "\u201ccurly quotes\u201d and \u2018single\u2019",
    "control\x00chars\x07and\x0bvertical\x1btab\x7f",
    "\x1b[31mred terminal\x1b[0m text",
    "3.14159 1,000,000 2024-01-31 #42 $5 100% 1st 22nd",
    "...!?;:'\"()[]{}<>/\\|@#$^*-_=+~`",
    "<start_of_text> literal <end_of_text> markers <START_OF_TEXT>",
    "a" * 300,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    " ".join(["sound of rain on leaves near a river at night"] * 40),
    "line one\nline two\r\nline three\u2028four\u00a0nbsp",
    "zero\u200bwidth\ufeffbom and combining e\u0301 vs \u00e9",
]


@pytest.fixture(scope="module")
def reference():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


@pytest.fixture(scope="module")
def tokenizer():
    return ClipTokenizer()


def _random_texts(n: int, seed: int = 0) -> list[str]:
    """Seeded strings mixing ASCII, Latin-1, accents, CJK, emoji, entities and whitespace."""
    rng = random.Random(seed)
    pieces = [
        *"abcxyzABCXYZ0123456789 .,;!?'&-_\t\n",
        "é", "ü", "ñ", "Ã", "©", "\u0301", "ﬁ", "犬", "の", "한", "🐶", "🔊", "\u200d",
        "&amp;", "&lt;", "&#x27;", "'s", "'ll", "Ã©", "â€™", "\x00", "\x85", "\xa0", "ǅ",
    ]  # fmt: skip
    return ["".join(rng.choices(pieces, k=rng.randint(0, 40))) for _ in range(n)]


@pytest.mark.parametrize("text", CORPUS)
def test_ids_equal_open_clips(tokenizer, reference, text):
    assert tokenizer.encode(text) == reference.encode(text)


def test_ids_equal_open_clips_on_random_text(tokenizer, reference):
    for text in _random_texts(300):
        assert tokenizer.encode(text) == reference.encode(text), repr(text)


def test_special_token_ids(tokenizer, reference):
    assert (tokenizer.sot_token_id, tokenizer.eot_token_id) == (49406, 49407)
    assert tokenizer.sot_token_id == reference.sot_token_id
    assert tokenizer.eot_token_id == reference.eot_token_id


def test_text_skipped_by_ftfy_is_text_ftfy_leaves_alone():
    import ftfy

    rng = random.Random(1)
    alphabet = [chr(c) for c in range(0x20, 0x7F)] + ["\t", "\n", "\r", "\r\n"]
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 60))) for _ in range(500)]
    plain = [t for t in texts if PLAIN_TEXT.fullmatch(t)]
    assert len(plain) > 100
    assert all(ftfy.fix_text(t) == t for t in plain)
    # What ftfy would change is not plain.
    for text in ["&amp;", "a\x0bb", "\x1b[0m", "\x00", "a\rb", "café", "Ã©"]:
        assert not PLAIN_TEXT.fullmatch(text)


def test_missing_open_clip_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match="open_clip"):
        clip_tokenizer.vocab_path()
    with pytest.raises(UsageError, match="pip install open_clip_torch"):
        ClipTokenizer()


def test_rows_have_start_and_end_tokens_and_join_labels():
    rows = token_rows(["a dog", ["dog", "bark"], "dog, bark", ""])
    assert rows[0][0] == 49406 and rows[0][-1] == 49407 and len(rows[0]) == 4
    assert rows[1] == rows[2]
    assert rows[3] == [49406, 49407]
    assert token_rows([]) == []


def test_long_text_keeps_its_start_with_a_warning(tokenizer):
    text = " ".join(f"w{i}" for i in range(200))
    with pytest.warns(TextTruncatedWarning, match="truncated to 77 tokens"):
        (row,) = token_rows([text])
    ids = tokenizer.encode(text)
    assert row == [49406, *ids[:75], 49407]
    with pytest.warns(TextTruncatedWarning, match="truncated to 10 tokens"):
        (short,) = token_rows([text], context_length=10)
    assert short == [49406, *ids[:8], 49407]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (exact,) = token_rows(["dog " * 75])  # 75 words + start and end: exactly 77
    assert len(exact) == 77


def test_tokenize_equals_open_clips_rows_up_to_the_longest_end():
    from open_clip import tokenizer as oc

    texts = [*CORPUS, *_random_texts(50, seed=2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TextTruncatedWarning)
        ours = tokenize(texts)
    theirs = oc.tokenize(texts, context_length=77)
    width = ours.shape[1]
    assert ours.dtype == torch.long and width == 77  # the long corpus texts fill the context
    assert torch.equal(ours, theirs[:, :width])

    short = tokenize(["a dog", "rain"])
    assert torch.equal(short, oc.tokenize(["a dog", "rain"])[:, : short.shape[1]])
    assert short.shape[1] == 4 and short[1, 3] == 0
