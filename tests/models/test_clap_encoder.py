"""ClapEncoder: lazy towers, official vectors from a checkpoint, windows, tokenizers, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from xsearch.errors import ParameterError, UsageError, WeightsNotFound
from xsearch.models.bpe import ClapTokenizer, byte_level_vocab
from xsearch.models.clap import build_clap
from xsearch.models.clap_audio import prepare_clip
from xsearch.models.clap_config import clap_config
from xsearch.models.clap_encoder import ClapEncoder
from xsearch.models.weights import cache_dir

TEXTS = ["a dog barking", "rain on a tin roof", "", "wow!! loud"]


def _waves(rate: float, seconds: list[float], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(3000 * rng.standard_normal(int(rate * s))).astype(np.float32) for s in seconds]


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


@pytest.fixture(scope="module", params=["laion-clap-tiny", "msclap-2023-tiny"])
def random_encoder(request):
    return ClapEncoder(request.param, None, batch_size=3, seed=0)


def test_spec_follows_the_config(random_encoder):
    cfg = random_encoder.config
    spec = random_encoder.spec
    assert spec.family == cfg.family and spec.config == cfg.name and spec.dim == 32
    assert spec.audio.sample_rate == cfg.audio.sample_rate
    assert spec.audio.clip_seconds == cfg.audio.clip_seconds
    assert spec.text.context_length == 77 and spec.image is None
    assert random_encoder.modalities == ("audio", "text")
    with pytest.raises(UsageError, match="not image"):
        random_encoder.embed_images([object()])
    with pytest.raises(UsageError, match="not image"):
        random_encoder.embed("image", [object()])


def test_rows_are_unit_float32_and_tell_inputs_apart(random_encoder):
    rate = random_encoder.sample_rate
    texts = random_encoder.embed_text(TEXTS)
    t = np.arange(rate) / rate
    tone = 8000 * np.sin(2 * np.pi * 440 * t)
    chirp = 8000 * np.sin(2 * np.pi * (200 + 3000 * t) * t)
    clicks = np.where(np.arange(rate) % 2000 == 0, 20000.0, 0.0)
    signals = [w.astype(np.float32) for w in (tone, chirp, clicks)]
    audio = random_encoder.embed_audio(signals)
    for rows, n in ((texts, 4), (audio, 3)):
        assert rows.dtype == np.float32 and rows.shape == (n, 32)
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
        # (untrained towers map everything close together, but never to the same row)
        gaps = np.abs(rows[:, None] - rows[None]).max(-1)
        assert gaps[~np.eye(n, dtype=bool)].min() > 1e-6
    labels = random_encoder.embed_text([["dog", "bark"], "dog, bark"])
    np.testing.assert_allclose(labels[0], labels[1], atol=1e-6)


def test_random_weights_are_the_seeded_build(random_encoder):
    """Random towers are `torch.manual_seed(seed)` then `build_clap`, and the byte-level
    vocabulary is written once in the cache."""
    cfg = random_encoder.config
    torch.manual_seed(random_encoder.seed)
    model = build_clap(cfg)
    folder = cache_dir() / "tokenizers" / f"{cfg.text.tower}-bytes"
    assert random_encoder.tokenizer_folder() == folder
    tok = ClapTokenizer(folder, cfg.text.tower, 77, cfg.text.max_positions)
    ids, mask = tok(TEXTS)
    waves = _waves(cfg.audio.sample_rate, [0.5, 1.0])
    clips = np.stack([prepare_clip(w, cfg) for w in waves])
    with torch.no_grad():
        text = model.text_embedding(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        audio = model.audio_embedding(torch.from_numpy(clips)).numpy()
    np.testing.assert_allclose(random_encoder.embed_text(TEXTS), _unit(text), atol=1e-5)
    np.testing.assert_allclose(random_encoder.embed_audio(waves), _unit(audio), atol=1e-5)


def test_long_audio_is_the_mean_of_its_windows(random_encoder):
    cfg = random_encoder.config
    clip = cfg.audio.clip_samples
    (wave,) = _waves(cfg.audio.sample_rate, [2.6 * cfg.audio.clip_seconds], seed=4)
    windows = [wave[:clip], wave[clip : 2 * clip], wave[2 * clip :]]  # the last one short
    each = random_encoder.embed_audio(windows)
    want = _unit(each.mean(axis=0))
    np.testing.assert_allclose(random_encoder.embed_audio([wave])[0], want, atol=1e-5)
    # batching never changes a row
    alone = [random_encoder.embed_audio([w])[0] for w in windows]
    np.testing.assert_allclose(np.stack(alone), each, atol=1e-5)


def test_empty_inputs(random_encoder):
    assert random_encoder.embed_text([]).shape == (0, 32)
    assert random_encoder.embed_audio([]).shape == (0, 32)
    silent = random_encoder.embed_audio([np.zeros(0, dtype=np.float32)])
    assert np.isfinite(silent).all() and abs(np.linalg.norm(silent) - 1) < 1e-5


def test_seeds_and_batch_sizes():
    a = ClapEncoder("laion-clap-tiny", None, batch_size=1, seed=0)
    b = ClapEncoder("laion-clap-tiny", None, batch_size=16, seed=0)
    c = ClapEncoder("laion-clap-tiny", None, seed=1)
    np.testing.assert_allclose(a.embed_text(TEXTS), b.embed_text(TEXTS), atol=1e-5)
    assert np.abs(a.embed_text(TEXTS) - c.embed_text(TEXTS)).max() > 1e-3


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    """A seeded tiny LAION checkpoint in the official container, with a vocabulary beside."""
    folder = tmp_path_factory.mktemp("laion")
    torch.manual_seed(7)
    model = build_clap(clap_config("laion-clap-tiny"))
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state}, folder / "tiny.pt")
    byte_level_vocab(folder, "roberta")
    return folder, model


def test_checkpoint_towers_load_one_at_a_time_and_give_the_models_vectors(checkpoint_dir):
    folder, model = checkpoint_dir
    encoder = ClapEncoder("laion-clap-tiny", folder / "tiny.pt", batch_size=2)
    assert encoder.loaded() == () and not encoder.weights.is_random
    ids, mask = ClapTokenizer(folder, "roberta", 77)(TEXTS)
    with torch.no_grad():
        text = model.text_embedding(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(encoder.embed_text(TEXTS), _unit(text), atol=1e-5)
    assert encoder.loaded() == ("text",)
    waves = _waves(48000, [0.2, 2.0])
    clips = torch.from_numpy(np.stack([prepare_clip(w, model.config) for w in waves]))
    with torch.no_grad():
        audio = model.audio_embedding(clips).numpy()
    np.testing.assert_allclose(encoder.embed_audio(waves), _unit(audio), atol=1e-5)
    assert encoder.loaded() == ("text", "audio")


def test_only_the_needed_towers_weights_are_loaded(checkpoint_dir):
    folder, _ = checkpoint_dir
    encoder = ClapEncoder("laion-clap-tiny", folder / "tiny.pt")
    model = encoder._model("audio")
    assert not any(p.is_meta for p in model.audio_branch.parameters())
    assert all(p.is_meta for p in model.text_branch.parameters())


def test_a_checkpoint_without_a_vocabulary(tmp_path, checkpoint_dir):
    folder, _ = checkpoint_dir
    lonely = tmp_path / "alone"
    lonely.mkdir()
    (lonely / "tiny.pt").write_bytes((folder / "tiny.pt").read_bytes())
    encoder = ClapEncoder("laion-clap-tiny", lonely / "tiny.pt")
    assert encoder.embed_audio(_waves(48000, [0.5])).shape == (1, 32)  # audio needs none
    with pytest.raises(WeightsNotFound) as caught:
        encoder.embed_text(["dog"])
    message = str(caught.value)
    assert "\n" not in message and "vocab.json and merges.txt" in message
    assert str(lonely / "tiny.pt") in message
    given = ClapEncoder("laion-clap-tiny", lonely / "tiny.pt", tokenizer_dir=folder)
    assert given.embed_text(["dog"]).shape == (1, 32)
    with pytest.raises(WeightsNotFound, match=r"no vocab\.json and merges\.txt"):
        ClapEncoder("laion-clap-tiny", None, tokenizer_dir=tmp_path).embed_text(["dog"])


def test_full_config_error_names_the_official_tokenizer_files(tmp_path):
    path = tmp_path / "630k-best.pt"
    path.write_bytes(b"PK\x03\x04")  # never read: the tokenizer is looked for first
    with pytest.raises(WeightsNotFound, match=r"huggingface\.co/FacebookAI/roberta-base"):
        ClapEncoder("laion-clap", path).embed_text(["dog"])


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(ParameterError, match="int8") as caught:
        ClapEncoder("laion-clap-tiny", None, precision="int8")
    assert isinstance(caught.value, UsageError) and "\n" not in str(caught.value)
    with pytest.raises(ParameterError, match="CUDA only"):
        ClapEncoder("laion-clap-tiny", None, precision="fp16")
    with pytest.raises(ParameterError, match="unknown precision"):
        ClapEncoder("laion-clap-tiny", None, precision="fp8")
    with pytest.raises(WeightsNotFound, match="no such checkpoint"):
        ClapEncoder("laion-clap-tiny", tmp_path / "missing.pt")
    with pytest.raises(UsageError, match="known models"):
        ClapEncoder("laion-clap-huge", None)


def test_bf16_on_the_cpu_is_close_to_fp32():
    fp32 = ClapEncoder("msclap-2023-tiny", None)
    bf16 = ClapEncoder("msclap-2023-tiny", None, precision="bf16")
    waves = _waves(44100, [1.0, 2.0])
    for a, b in (
        (fp32.embed_text(TEXTS), bf16.embed_text(TEXTS)),
        (fp32.embed_audio(waves), bf16.embed_audio(waves)),
    ):
        assert np.sum(a * b, axis=1).min() > 0.99


def test_constructing_imports_no_torch():
    code = (
        "import sys\n"
        "from xsearch.models.clap_encoder import ClapEncoder\n"
        "e = ClapEncoder('msclap-2023', None)\n"
        "assert e.dim == 1024 and e.loaded() == ()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("name", "frames"), [("laion-clap", 1001), ("msclap-2023", 965)])
def test_full_size_models_with_random_weights(name, frames):
    encoder = ClapEncoder(name, None, batch_size=2)
    cfg = encoder.config
    model = encoder._model("audio")
    clip = torch.from_numpy(prepare_clip(_waves(cfg.audio.sample_rate, [1.0])[0], cfg))[None]
    htsat = model.audio_branch if cfg.family == "laion-clap" else model.audio_encoder.base.htsat
    with torch.no_grad():
        mel = htsat.log_mel(clip)
    assert mel.shape == (1, 1, frames, 64) and htsat.fold(mel).shape == (1, 1, 256, 256)
    rows = np.concatenate([encoder.embed_audio(_waves(cfg.audio.sample_rate, [3.0, 12.0])),
                           encoder.embed_text(["a dog barking", "rain"])])  # fmt: skip
    assert rows.shape == (4, cfg.embed_dim) and np.isfinite(rows).all()
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)


def test_only_a_few_text_tokens_run_on_one_cpu_thread(monkeypatch):
    # The choice counts the tokens the tower runs (padding to the batch's longest included),
    # not the characters: eight captions of ~20 tokens each use every thread.
    from xsearch.models import clap_encoder

    encoder = ClapEncoder("laion-clap-tiny", None, batch_size=64, seed=0)
    model = encoder._model("text")
    threads: list[tuple[int, int]] = []
    real = model.text_embedding

    def counting(ids, mask):
        threads.append((ids.numel(), torch.get_num_threads()))
        return real(ids, mask)

    monkeypatch.setattr(encoder, "_model", lambda modality: model)
    monkeypatch.setattr(model, "text_embedding", counting)
    monkeypatch.setattr(clap_encoder, "SMALL_TEXT_TOKENS", 40)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        encoder.embed_text(["dog"])
        encoder.embed_text(["a dog barking in the rain"] * 8)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    (few, one), (many, two) = threads
    assert few <= 40 < many and one == 1 and two == 2
