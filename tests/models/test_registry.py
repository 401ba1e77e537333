"""The model registry: every model is data with an explicit family, read without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import pytest

from xsearch.errors import UsageError, WeightsNotFound
from xsearch.models.registry import FAMILIES, model_card, model_names, spec_for
from xsearch.models.weights import resolve_weights, weights_dir


def test_every_config_file_names_a_known_family_and_its_facts():
    folder = resources.files("xsearch.models") / "configs"
    names = model_names()
    assert {"audioclip", "laion-clap", "msclap-2023"} <= set(names)
    for name in names:
        raw = json.loads((folder / f"{name}.json").read_text())
        assert raw["family"] in FAMILIES, name
        card = model_card(name)
        assert card.spec.config == name and card.family == raw["family"]
        assert card.dim == raw["embed_dim"] and card.licence != "unknown"
        assert card.modalities, name


def test_families_declare_what_each_model_embeds_and_expects():
    laion, msclap, audioclip = (spec_for(n) for n in ("laion-clap", "msclap-2023", "audioclip"))
    assert laion.modalities == ("audio", "text") and laion.dim == 512
    assert laion.audio is not None and laion.audio.sample_rate == 48000
    assert laion.audio.clip_seconds == 10.0 and laion.audio.resampler == "soxr_hq"
    assert msclap.modalities == ("audio", "text") and msclap.dim == 1024
    assert msclap.audio is not None and (msclap.audio.sample_rate, msclap.audio.clip_seconds) == (
        44100,
        7.0,
    )
    assert audioclip.modalities == ("image", "audio", "text")
    # ingest cuts long audio into one model clip per window; AudioCLIP takes any length
    assert (laion.window_seconds, msclap.window_seconds, audioclip.window_seconds) == (
        10.0,
        7.0,
        10.0,
    )
    with pytest.raises(UsageError, match="embeds audio, text, not image"):
        laion.require("image")


def test_unknown_model_and_unknown_weights_are_one_line_errors():
    with pytest.raises(UsageError, match=r"unknown model 'clapp'; known models: .*laion-clap"):
        model_card("clapp")
    with pytest.raises(UsageError, match="no weights 'x'; known: 630k-audioset-best, 630k-best"):
        model_card("laion-clap").release("x")
    with pytest.raises(UsageError, match="random weights only"):
        model_card("laion-clap-tiny").release()


def test_each_model_has_its_own_cache_folder_and_missing_message(tmp_path, monkeypatch):
    monkeypatch.setenv("XSEARCH_CACHE", str(tmp_path))
    assert weights_dir() == tmp_path / "weights"  # AudioCLIP's files stay where they were
    assert weights_dir("laion-clap") == tmp_path / "weights" / "laion-clap"
    with pytest.raises(WeightsNotFound) as caught:
        resolve_weights(None, "laion-clap")
    message = str(caught.value)
    assert "xsearch model fetch laion-clap" in message
    assert "630k-audioset-best.pt and vocab.json and merges.txt" in message
    assert "\n" not in message
    # the AudioCLIP checkpoint in the cache is not taken for another model
    (tmp_path / "weights" / "AudioCLIP-Full-Training.pt").parent.mkdir(parents=True)
    (tmp_path / "weights" / "AudioCLIP-Full-Training.pt").write_bytes(b"x")
    with pytest.raises(WeightsNotFound):
        resolve_weights(None, "msclap-2023")
    second = weights_dir("laion-clap") / "630k-best.pt"
    second.parent.mkdir(parents=True)
    second.write_bytes(b"x")
    assert resolve_weights(None, "laion-clap").path == second


def test_registry_loads_without_torch():
    code = (
        "import sys; from xsearch.models.registry import model_card, model_names; "
        "[model_card(n) for n in model_names()]; "
        "from xsearch.api import list_models; list_models(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_xsearch_weights_names_audioclips_checkpoint_only(tmp_path, monkeypatch):
    monkeypatch.setenv("XSEARCH_CACHE", str(tmp_path))
    checkpoint = tmp_path / "audioclip.pt"
    checkpoint.write_bytes(b"x")
    monkeypatch.setenv("XSEARCH_WEIGHTS", str(checkpoint))
    assert resolve_weights(None).path == checkpoint
    assert resolve_weights(None, "audioclip").path == checkpoint
    with pytest.raises(WeightsNotFound, match="no laion-clap weights found"):
        resolve_weights(None, "laion-clap")  # not handed AudioCLIP's file
