"""`xsearch model convert`: MMV's official .pkl becomes a checkpoint commands load, with its
vocabulary; the .pkl itself, a file of another model or a converted file of another config
are refused in one line; `model list` says what is not reproduced."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.cli import run_cli
from tests.helpers.mmv_recipe import make_tree, write_official_pkl
from xsearch.errors import CheckpointError
from xsearch.models import load_encoder
from xsearch.models.mmv import mmv_config
from xsearch.models.mmv_checkpoint import convert_mmv, load_mmv_state
from xsearch.models.mmv_tokenizer import SPECIAL_WORDS


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """mmv-tiny's seeded parameters in the official format, and a vocabulary for them."""
    folder = tmp_path_factory.mktemp("mmv-convert")
    pkl = write_official_pkl(make_tree(mmv_config("mmv-tiny")), folder / "mmv_tiny.pkl")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL_WORDS, "dog", "rain", "bark"]) + "\n")
    return folder, pkl, vocab


def test_the_command_converts_and_the_encoder_loads_it(official):
    folder, pkl, vocab = official
    out = folder / "mmv-tiny.pt"
    done = run_cli(
        "model", "convert", "mmv-tiny", str(pkl), "--out", str(out), "--vocab", str(vocab)
    )
    assert done.returncode == 0, done.stderr
    assert out.is_file() and not list(folder.glob("*.part"))
    _, words = load_mmv_state(out, "mmv-tiny")
    assert words[: len(SPECIAL_WORDS)] == list(SPECIAL_WORDS) and words[-1] == "bark"
    encoder = load_encoder(str(out), "mmv-tiny", device="cpu")
    rows = encoder.embed("text", ["Dog!", "bark", "dog"])
    assert rows.shape == (3, encoder.dim) and np.isfinite(rows).all()
    np.testing.assert_allclose(rows[0], rows[2], atol=1e-6)  # cased and punctuated alike
    assert not np.allclose(rows[1], rows[2], atol=1e-3)
    random = load_encoder("random", "mmv-tiny", device="cpu").embed("text", ["dog"])
    assert not np.allclose(random[0], rows[2], atol=1e-3)  # the converted weights are used


def test_the_official_file_itself_is_named_as_needing_conversion(official):
    _, pkl, _ = official
    with pytest.raises(CheckpointError, match="xsearch model convert mmv-tiny") as caught:
        load_mmv_state(pkl, "mmv-tiny")
    assert "\n" not in str(caught.value)
    done = run_cli("embed", "text", "dog", "--model", "mmv-tiny", "--weights", str(pkl))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "xsearch model convert" in done.stderr


def test_a_file_of_another_model_is_refused_and_nothing_written(tmp_path, official):
    _, pkl, _ = official
    out = tmp_path / "s3d.pt"
    with pytest.raises(CheckpointError) as caught:
        convert_mmv(pkl, "mmv-s3d", out)  # tiny parameters are not S3D's
    assert "\n" not in str(caught.value) and not out.exists()
    assert not list(tmp_path.iterdir())


def test_a_converted_file_of_another_config_is_refused(tmp_path, official):
    _, pkl, _ = official
    out = convert_mmv(pkl, "mmv-tiny", tmp_path / "tiny.pt")
    with pytest.raises(CheckpointError, match="converted for mmv-tiny"):
        load_mmv_state(out, "mmv-s3d")


def test_a_bad_vocabulary_is_one_line(tmp_path, official):
    _, pkl, _ = official
    bad = tmp_path / "vocab.txt"
    bad.write_bytes(b"\xff\xfe not utf-8\n")
    done = run_cli("model", "convert", "mmv-tiny", str(pkl), "--out", str(tmp_path / "x.pt"),
                   "--vocab", str(bad))  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if line.strip()]) == 1
    assert not (tmp_path / "x.pt").exists()


def test_other_models_have_nothing_to_convert(official):
    _, pkl, _ = official
    done = run_cli("model", "convert", "cav-mae", str(pkl))
    assert done.returncode != 0 and "nothing to convert" in done.stderr


def test_model_list_says_what_is_not_reproduced():
    done = run_cli("model", "list", "--json")
    cards = {c["name"]: c for c in map(json.loads, done.stdout.splitlines())}
    gaps = " ".join(cards["mmv-s3d"]["gaps"])
    assert "frontend" in gaps and "word list" in gaps
    assert cards["mmv-s3d"]["modalities"] == ["image", "audio", "text"]
    assert cards["cav-mae"]["gaps"] == []
    shown = run_cli("model", "list").stdout
    assert "mmv-s3d: text: MMV's word list was not released" in " ".join(shown.split())
