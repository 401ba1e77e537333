"""xsearch's LAION-CLAP and Microsoft CLAP 2023 reproduce the official code: golden vectors.

`tests/data/golden_laion_clap.npz` and `tests/data/golden_msclap_2023.npz` hold what the
official packages (laion_clap 1.1.7, msclap 1.3.4; float32 on CPU) compute for the seeded
checkpoint of `tests/helpers/clap_recipe.py` (full size, the real architecture), the clips of
`tests/data/clap_audio/`, fixed token rows, and texts tokenized by the official tokenizer
classes on the vocabulary of `tests/helpers/small_vocab.py`; each file's `note` and `recipe`
entries say how. The official code is not part of this repository and nothing here runs it:
these tests rebuild the checkpoint, save it in the official container, load it through
xsearch and compare.

What each golden isolates:
- `audio_wave`: the model and clip preparation alone (int16 round trip, fill rule): each
  clip's samples at its own rate, taken as the model's rate, through `prepare_clip`.
- `audio_file`: the whole file path (decoding, resampling, channels) through `xsearch.api`.
- `text`: the text towers on fixed token rows; `tok_ids`: the tokenizers; `e2e_text`: both.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import clap_recipe

DATA = Path(__file__).parents[1] / "data"
GOLDEN = {
    "laion-clap": DATA / "golden_laion_clap.npz",
    "msclap": DATA / "golden_msclap_2023.npz",
}
CONFIG = {"laion-clap": "laion-clap", "msclap": "msclap-2023"}
VOCAB_KIND = {"laion-clap": "roberta", "msclap": "gpt2"}
FAMILIES = list(GOLDEN)

# The official code's own float32 run differs from its float64 run by up to 1.3e-6 in cosine
# for audio (sharp random attention amplifies rounding) and 1e-9 for text; xsearch (CPU,
# float32) is within 1.4e-9 of the goldens everywhere they agree (measured minima per test
# below). The bounds leave that rounding room and catch, among others: no int16 round trip
# (audio cosine 0.92), align_corners=False (0.92), mean for last-token pooling (0.57), a
# librosa length one short (0.88), erf GELU in GPT-2 for its tanh one (1 - 1.1e-5).
MIN_COSINE = {"audio": 0.99999, "text": 0.999999}
# Distinct inputs must stay apart, or a collapsed model would pass the cosine check.
MAX_OFF_DIAGONAL = 0.95
# msclap lays the channels of a stereo file one after the other (reshape(-1)); xsearch
# downmixes to their mean, as LAION-CLAP's loader does (a documented difference: a stereo file
# keeps its duration and timestamps). That clip differs (cosine 0.870): an expected failure.
# Resampling (torchaudio's sinc filter for files not at 44.1 kHz) is reproduced.
MS_LOADER_GAPS = {"speech_44k_stereo_3s.flac"}


@pytest.fixture(scope="module", params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def golden(family) -> dict[str, np.ndarray]:
    with np.load(GOLDEN[family]) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def checkpoint(family, golden, tmp_path_factory):
    """The seeded checkpoint rebuilt from the recipe, saved in the official container:
    (path, its fingerprint). About 640 MB, removed after the module."""
    import torch

    state = clap_recipe.make_checkpoint(family, int(golden["seed"]), str(golden["config"]))
    keys, stats = clap_recipe.fingerprint(state)
    path = tmp_path_factory.mktemp(f"golden-{family}") / "seeded.pt"
    torch.save(clap_recipe.container(family, state), path)
    del state
    yield path, keys, stats
    path.unlink()


@pytest.fixture(scope="module")
def model(family, checkpoint):
    from xsearch.models.clap_checkpoint import load_clap_model
    from xsearch.models.clap_config import clap_config

    return load_clap_model(checkpoint[0], clap_config(CONFIG[family]))


def _cosines(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    got, want = got.astype(np.float64), want.astype(np.float64)
    dots = (got * want).sum(axis=1)
    return dots / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)


def _assert_matches(got: np.ndarray, want: np.ndarray, labels, modality: str, raw: bool) -> None:
    """Cosine >= MIN_COSINE per row; for raw (unnormalised) goldens the norms agree too."""
    assert got.shape == want.shape, (got.shape, want.shape)
    cosines = _cosines(got, want)
    shown = {str(label): round(float(c), 7) for label, c in zip(labels, cosines)}
    assert cosines.min() >= MIN_COSINE[modality], f"per-input cosines {shown}"
    if raw:
        ratio = np.linalg.norm(got, axis=1) / np.linalg.norm(want.astype(np.float64), axis=1)
        assert np.abs(ratio - 1).max() < 1e-3, f"norm ratios {np.round(ratio, 5)}"


def native_channels(path: Path) -> np.ndarray:
    """A file's samples as stored, [channels, n] float32 in int16 scale (PyAV, no resampling)."""
    import av

    chunks = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels
        for frame in container.decode(stream):
            assert frame.format.name in ("s16", "s16p"), frame.format.name
            samples = frame.to_ndarray()
            if not frame.format.is_planar:
                samples = samples.reshape(-1, channels).T
            chunks.append(samples)
    return np.concatenate(chunks, axis=1).astype(np.float32)


def model_wave(family: str, path: Path) -> np.ndarray:
    """What the `audio_wave` goldens fed the official preparation, in int16 scale: LAION the
    channel mean (librosa's to_mono), MS CLAP the channels one after the other (msclap's
    reshape(-1)), its first clip when longer."""
    channels = native_channels(path)
    if family == "laion-clap":
        return channels.mean(axis=0, dtype=np.float32)
    return channels.reshape(-1)[: clap_recipe.CLIP_SAMPLES[family]]


# --- the golden files themselves (fast) --------------------------------------------------------


def test_golden_file_matches_recipe(family, golden):
    from tests.helpers.clap_recipe import RECIPE_VERSION, make_inputs

    assert int(golden["version"]) == RECIPE_VERSION, "recipe changed: regenerate the golden file"
    inputs = make_inputs(family, int(golden["seed"]))
    assert golden["clips"].tolist() == [p.name for p in inputs["clips"]]
    assert golden["file_clips"].tolist() == [p.name for p in inputs["file_clips"]]
    assert golden["texts"].tolist() == inputs["texts"]
    assert golden["e2e_texts"].tolist() == inputs["e2e_texts"]
    np.testing.assert_array_equal(golden["ids"], inputs["ids"])
    np.testing.assert_array_equal(golden["mask"], inputs["mask"])
    hashes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs["clips"]]
    assert golden["clip_sha256"].tolist() == hashes, "a clip changed: regenerate the goldens"
    rows = {"audio_file": "file_clips", "audio_wave": "clips", "e2e_text": "e2e_texts"}
    for key, inputs_key in rows.items():
        assert len(golden[key]) == len(golden[inputs_key])
    assert len(golden["text"]) == len(golden["ids"])
    norms = np.linalg.norm(golden["audio_file"].astype(np.float64), axis=1)
    if family == "laion-clap":  # laion_clap returns unit vectors, msclap raw projections
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    else:
        assert norms.min() > 2.0


@pytest.mark.parametrize("key", ["audio_file", "audio_wave", "text", "e2e_text"])
def test_golden_inputs_are_discriminative(golden, key):
    vectors = golden[key].astype(np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cosines = vectors @ vectors.T
    off_diagonal = cosines[~np.eye(len(cosines), dtype=bool)]
    assert off_diagonal.max() < MAX_OFF_DIAGONAL, off_diagonal.max()


def test_clips_are_as_documented():
    """The rates, channel counts and lengths the goldens were made for (the 5 s clip's
    220,500 samples become 240,001 at 48 kHz in librosa, one more than 5 s)."""
    import av

    want = {
        "speech_44k_1s.wav": (44100, 1, 48306),
        "speech_44k_5s.flac": (44100, 1, 220500),
        "speech_48k_7s.flac": (48000, 1, 326400),
        "speech_16k_4s.wav": (16000, 1, 64000),
        "speech_22k_10s.flac": (22050, 1, 218295),
        "speech_44k_stereo_3s.flac": (44100, 2, 127890),
        "speech_44k_silence.flac": (44100, 1, 198450),
    }
    for name, (rate, channels, length) in want.items():
        path = clap_recipe.AUDIO_DIR / name
        with av.open(str(path)) as container:
            assert container.streams.audio[0].codec_context.sample_rate == rate, name
        samples = native_channels(path)
        assert samples.shape == (channels, length), name
    silence = native_channels(clap_recipe.AUDIO_DIR / "speech_44k_silence.flac")[0]
    assert not silence[66150 : 66150 + 44100].any()  # exact digital silence


# --- tokenizers (fast) -------------------------------------------------------------------------


def test_tokenizer_matches_official(family, golden, tmp_path):
    """Measured: every row identical. The official rows: RobertaTokenizer (LAION's call:
    padding to 77, truncation) and GPT2TokenizerFast with "!" as pad token (msclap's call:
    text + " <|endoftext|>", padding to 77, no truncation: the long text keeps 131 ids)."""
    from tests.helpers.small_vocab import write_vocab
    from xsearch.models.bpe import ClapTokenizer

    folder = write_vocab(tmp_path, VOCAB_KIND[family])
    tokenizer = ClapTokenizer(folder, VOCAB_KIND[family], 77, None)
    texts = golden["texts"].tolist()
    bad = []
    for text, want_ids, want_mask in zip(texts, golden["tok_ids"], golden["tok_mask"]):
        want_ids, want_mask = want_ids[want_ids >= 0], want_mask[want_mask >= 0]
        ids, mask = tokenizer([text])
        if ids[0].tolist() != want_ids.tolist() or mask[0].tolist() != want_mask.tolist():
            bad.append(f"{text!r}: {ids[0][: len(want_ids)].tolist()} != {want_ids.tolist()}")
    assert not bad, f"{len(bad)} of {len(texts)} texts differ: " + "; ".join(bad[:3])


# --- the full-size model (slow) ----------------------------------------------------------------


@pytest.mark.slow  # rebuilds and saves the full-size checkpoint
def test_rebuilt_checkpoint_is_the_golden_one(golden, checkpoint):
    """Same keys, and per tensor the same sum and norm (the recipe draws from seeded CPU
    generators and computes the rest exactly: nothing here may differ but rounding)."""
    _, keys, stats = checkpoint
    want_keys = str(golden["checkpoint_keys"]).split("\n")
    assert keys.split("\n") == want_keys
    want = golden["checkpoint_stats"]
    close = np.isclose(stats, want, rtol=1e-6, atol=1e-6 * want[:, 1:2])
    bad = [key for key, ok in zip(want_keys, close.all(axis=1)) if not ok]
    assert not bad, f"{len(bad)} tensors differ from the golden checkpoint: {bad[:5]}"


@pytest.mark.slow  # the full-size model
def test_audio_model_matches_official(family, golden, model):
    """Measured: 1 - cosine <= 1.4e-9 for every clip, both models (CPU, float32)."""
    import torch

    from xsearch.models.clap_audio import prepare_clip

    clips = [
        prepare_clip(model_wave(family, clap_recipe.AUDIO_DIR / name), model.config)
        for name in golden["clips"]
    ]
    with torch.inference_mode():
        got = model.audio_embedding(torch.from_numpy(np.stack(clips))).numpy()
    _assert_matches(got, golden["audio_wave"], golden["clips"], "audio", raw=family == "msclap")


@pytest.mark.slow  # the full-size model
def test_audio_files_match_official(family, golden, checkpoint):
    """Files through xsearch's public API: decoding, resampling, channels, clip preparation
    and the model, against the official file path. Measured: 1 - cosine <= 7e-10 for every
    LAION clip and every MS clip outside MS_LOADER_GAPS (the stereo clip, downmixed: 0.870)."""
    import xsearch.api

    names = golden["file_clips"].tolist()
    files = [clap_recipe.AUDIO_DIR / name for name in names]
    got = xsearch.api.embed(
        "audio", files, weights=str(checkpoint[0]), model=CONFIG[family], device="cpu"
    )
    known = np.array([family == "msclap" and n in MS_LOADER_GAPS for n in names])
    _assert_matches(
        got[~known], golden["audio_file"][~known], np.array(names)[~known], "audio", raw=False
    )
    if known.any():
        cosines = _cosines(got[known], golden["audio_file"][known])
        if cosines.min() >= MIN_COSINE["audio"]:
            pytest.fail("the MS CLAP file clips of MS_LOADER_GAPS match now: empty that set")
        pytest.xfail(f"stereo is downmixed, not laid end to end: cosines {np.round(cosines, 4)}")


@pytest.mark.parametrize("name", clap_recipe.CLIPS)
def test_file_loading_matches_official(family, golden, name, request):
    """The waveform xsearch decodes for the model is the official loader's: its length (the
    5 s clip: 240,001 samples at 48 kHz), sum, norm and 64 evenly spaced samples. LAION:
    librosa.load at 48 kHz; MS CLAP: torchaudio, resampled when the file is not at 44.1 kHz,
    channels one after the other. Measured: LAION identical, to the last bit."""
    from xsearch.media import load_audio
    from xsearch.models.clap_config import clap_config

    names = golden["file_clips"].tolist()
    if name not in names:
        pytest.skip("longer than one clip: the official loader crops it at random")
    if family == "msclap" and name in MS_LOADER_GAPS:
        request.applymarker(pytest.mark.xfail(strict=True, reason="see MS_LOADER_GAPS"))
    audio = clap_config(CONFIG[family]).audio
    index = names.index(name)
    wave = load_audio(clap_recipe.AUDIO_DIR / name, audio.sample_rate, resampler=audio.resampler)
    wave = wave.astype(np.float64) / 32768
    assert len(wave) == int(golden["loaded_len"][index])
    total, norm = golden["loaded_stats"][index]
    assert (
        abs(wave.sum() - total) <= 1e-6 * norm and abs(np.linalg.norm(wave) - norm) <= 1e-6 * norm
    )
    probe = wave[np.linspace(0, len(wave) - 1, 64).astype(int)]
    np.testing.assert_allclose(probe, golden["loaded_probe"][index], atol=1e-6)


@pytest.mark.slow  # the full-size model
def test_text_model_matches_official(family, golden, model):
    """Token rows through the text tower and projection. Measured: 1 - cosine <= 3.3e-10,
    norms equal (MS), the row with a "!" (id 0) inside included."""
    import torch

    with torch.inference_mode():
        got = model.text_embedding(
            torch.from_numpy(golden["ids"]), torch.from_numpy(golden["mask"])
        ).numpy()
    lengths = golden["mask"].sum(axis=1)
    labels = [f"{n} tokens" for n in lengths]
    _assert_matches(got, golden["text"], labels, "text", raw=family == "msclap")


@pytest.mark.slow  # the full-size model
def test_text_end_to_end_matches_official(family, golden, checkpoint, tmp_path):
    """Texts through ClapEncoder (tokenizer, model, normalisation) against the official
    text path with the same vocabulary. Measured: 1 - cosine <= 1.1e-10."""
    from tests.helpers.small_vocab import write_vocab
    from xsearch.models.clap_encoder import ClapEncoder

    folder = write_vocab(tmp_path, VOCAB_KIND[family])
    encoder = ClapEncoder(CONFIG[family], checkpoint=checkpoint[0], tokenizer_dir=folder)
    texts = golden["e2e_texts"].tolist()
    got = encoder.embed_text(texts)
    _assert_matches(got, golden["e2e_text"], texts, "text", raw=False)
