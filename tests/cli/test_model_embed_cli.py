"""`xsearch embed` and `xsearch model`: shells over xsearch.api's models functions."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from xsearch.cli.main import app
from xsearch.samples import audio_samples, write_wav

runner = CliRunner()
TINY = ["-w", "random", "--config", "audioclip-tiny", "--device", "cpu"]


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_every_bad_file_is_named_on_one_line(tmp_path):
    write_wav(tmp_path / "good.wav", audio_samples(seconds=1.0)["siren.wav"])
    (tmp_path / "bad.wav").write_bytes(b"RIFF garbage")
    files = [tmp_path / "bad.wav", tmp_path / "good.wav", tmp_path / "gone.wav"]
    result = invoke("embed", "audio", *map(str, files), *TINY)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: 2 of 3 inputs cannot be used")
    assert "bad.wav" in lines[0] and "gone.wav" in lines[0] and "good.wav" not in lines[0]
    assert "RANDOM weights" not in result.stderr  # the error comes alone


def test_embed_output_and_banner_with_random_weights():
    result = invoke("embed", "text", "a dog", "rain", *TINY, "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in rows] == ["a dog", "rain"] and len(rows[0]["embedding"]) == 1024
    assert "RANDOM weights" in result.stderr


def test_model_info_shows_family_and_modalities():
    result = invoke("model", "info", *TINY, "--json")
    facts = json.loads(result.stdout)
    assert facts["family"] == "audioclip" and facts["modalities"] == ["image", "audio", "text"]
    shown = invoke("model", "info", *TINY)
    assert shown.exit_code == 0 and "image, audio, text" in shown.stdout


def test_a_picture_given_as_weights_is_named_for_what_it_is(tmp_path):
    from PIL import Image

    path = tmp_path / "photo.pt"
    Image.new("RGB", (4, 4)).save(path, format="JPEG")
    result = invoke("model", "info", "-w", str(path))
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "photo.pt is not a PyTorch checkpoint (it looks like a JPEG image)" in lines[0]
