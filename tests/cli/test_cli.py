"""The command line: help, embed, model info, errors as one line with the right exit code."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.helpers.cli import run_cli
from xsearch.cli.main import app
from xsearch.samples import audio_samples, image_samples, write_video, write_wav

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    waves = audio_samples(seconds=1.0)
    for name in ("tone_440hz.wav", "siren.wav"):
        write_wav(folder / name, waves[name])
    for name, image in list(image_samples((96, 64)).items())[:2]:
        image.save(folder / name)
    write_video(folder / "clip.mp4", seconds=1.0)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    return folder


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from xsearch.cli.main import app; "
        "heavy = [m for m in ('torch', 'av', 'faiss', 'numpy', 'open_clip') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def _commands(typer_app, prefix=()):
    import typer.main

    group = typer.main.get_command(typer_app)
    stack = [(prefix, group)]
    while stack:
        path, cmd = stack.pop()
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            stack.append(((*path, name), sub))


def test_every_command_and_option_has_help():
    for path, cmd in _commands(app):
        assert (cmd.help or "").strip(), f"`xsearch {' '.join(path)}` has no help"
        for param in cmd.params:
            if param.param_type_name == "option" and param.name != "help":
                assert (param.help or "").strip(), f"{' '.join(path)} --{param.name} lacks help"


def test_embed_text_writes_npy(tiny_checkpoint, tmp_path):
    out = tmp_path / "t.npy"
    result = invoke("embed", "text", "dog bark", "rain", "-w", str(tiny_checkpoint), "-o", str(out))
    assert result.exit_code == 0, result.output
    vecs = np.load(out)
    assert vecs.shape == (2, 1024) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)


def test_embed_image_and_video_frame(tiny_checkpoint, media, tmp_path):
    out = tmp_path / "i.npy"
    files = [str(media / "red_circle.png"), str(media / "clip.mp4")]
    result = invoke("embed", "image", *files, "-w", str(tiny_checkpoint), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert np.load(out).shape == (2, 1024)


def test_embed_audio_json_one_object_per_input(tiny_checkpoint, media):
    files = [str(media / "tone_440hz.wav"), str(media / "clip.mp4"), str(media / "siren.wav")]
    result = invoke("embed", "audio", *files, "-w", str(tiny_checkpoint), "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [rec["input"] for rec in lines] == files
    assert all(len(rec["embedding"]) == 1024 for rec in lines)


def test_embed_json_matches_npy(tiny_checkpoint, tmp_path):
    out = tmp_path / "t.npy"
    invoke("embed", "text", "a cat", "-w", str(tiny_checkpoint), "-o", str(out))
    result = invoke("embed", "text", "a cat", "-w", str(tiny_checkpoint), "--json")
    row = json.loads(result.stdout.splitlines()[0])["embedding"]
    assert np.allclose(row, np.load(out)[0], atol=1e-6)


@pytest.mark.parametrize(
    ("kind", "name", "needle"),
    [
        ("audio", "broken.wav", "broken.wav"),
        ("audio", "missing.wav", "missing.wav"),
        ("image", "broken.wav", "broken.wav"),
        ("audio", "red_circle.png", "red_circle.png"),
    ],
)
def test_bad_media_is_one_line_naming_the_file(tiny_checkpoint, media, kind, name, needle):
    result = invoke("embed", kind, str(media / name), "-w", str(tiny_checkpoint))
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and needle in errors[0] and errors[0].startswith("error:")
    assert "Traceback" not in result.output


def test_video_without_audio_is_an_error_for_embed_audio(tiny_checkpoint, tmp_path):
    import av

    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    result = invoke("embed", "audio", str(path), "-w", str(tiny_checkpoint))
    assert result.exit_code == 1 and "silent.mp4" in result.stderr


def test_missing_weights_exit_2_with_where_to_put_them():
    result = invoke("embed", "text", "dog")
    assert result.exit_code == 2
    assert "xsearch model fetch" in result.stderr and "Traceback" not in result.output


def test_wrong_checkpoint_exit_2(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"hello")
    result = invoke("embed", "text", "dog", "-w", str(bad))
    assert result.exit_code == 2 and "bad.pt" in result.stderr


def test_unknown_device_is_a_usage_error(tiny_checkpoint):
    result = invoke("embed", "text", "dog", "-w", str(tiny_checkpoint), "--device", "tpu")
    assert result.exit_code == 2 and "device" in result.stderr


def test_random_weights_warn_loudly():
    result = invoke("embed", "text", "dog", "-w", "random", "--config", "audioclip-tiny", "--json")
    assert result.exit_code == 0
    assert "RANDOM weights" in result.stderr and "meaningless" in result.stderr


def test_model_info_reports_checkpoint(tiny_checkpoint):
    result = invoke("model", "info", "-w", str(tiny_checkpoint), "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["config"] == "audioclip-tiny" and facts["source"] == "weights"
    assert facts["parameters"] > 1_000_000 and facts["device"] == "cpu"


def test_model_info_random_full_config_counts_official_parameters():
    result = invoke("model", "info", "-w", "random", "--json")
    assert json.loads(result.stdout)["parameters"] == 134_246_925


def test_model_fetch_unknown_variant_is_rejected():
    result = invoke("model", "fetch", "huge")
    assert result.exit_code == 2


def test_real_process_errors_have_no_traceback(tmp_path):
    result = run_cli("embed", "audio", str(tmp_path / "nothing.wav"), "-w", "random")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:") and "nothing.wav" in result.stderr


@pytest.mark.slow  # the whole demo, twice, in real processes
def test_demo_ingests_and_queries_offline_on_random_weights(tmp_path):
    env = {"XSEARCH_HOME": str(tmp_path / "home")}
    args = ["demo", "--no-fetch", "--config", "audioclip-tiny", "--folder", str(tmp_path / "m")]
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert "RANDOM weights" in result.stderr
    assert "9 files added" in result.stdout
    assert "'a police siren' -> audio:" in result.stdout
    assert (tmp_path / "m" / "sunset_beeps.txt").exists()
    again = run_cli(*args, env=env)
    assert "0 files added, 9 unchanged" in again.stdout


def test_query_weights_parse_from_a_suffix(tmp_path):
    from xsearch.cli.query import weighted

    assert weighted("rain^2", is_file=False) == ("rain", 2.0)
    assert weighted("rain^-0.5", is_file=False) == ("rain", -0.5)
    assert weighted("x^y", is_file=False) == ("x^y", 1.0)
    assert weighted("plain", is_file=False) == ("plain", 1.0)
    odd = tmp_path / "take^2"  # a file whose own name ends in ^2 is that file
    odd.write_bytes(b"")
    assert weighted(str(odd)) == (str(odd), 1.0)
    assert weighted(f"{tmp_path / 'clip.wav'}^3") == (str(tmp_path / "clip.wav"), 3.0)


def test_error_lines_keep_square_brackets(tmp_path):
    """Messages are text, not markup: a path like '[live] trip.wav' is printed as it is."""
    odd = tmp_path / "[live] trip.wav"
    odd.write_bytes(b"not audio")
    done = run_cli("embed", "audio", str(odd), "-w", "random", "--config", "audioclip-tiny")
    assert done.returncode != 0 and "[live] trip.wav" in done.stderr, done.stderr


@pytest.mark.slow  # ingest and query in real processes
def test_ingest_reads_a_file_list_from_stdin_and_skips_what_is_not_a_file(tmp_path):
    import os
    from pathlib import Path

    waves = audio_samples(seconds=1.0)
    names = sorted(waves)[:2]
    for name in names:
        write_wav(tmp_path / name, waves[name])
    os.mkfifo(tmp_path / "stream.wav")  # reading it would block for ever
    listing = "\n".join(str(tmp_path / n) for n in [*names, "stream.wav"]) + "\n"
    exe = Path(sys.executable).with_name("xsearch")
    done = subprocess.run(
        [str(exe), "ingest", "-", "-w", "random", "--config", "audioclip-tiny", "--workers", "0",
         "--json"],
        input=listing, capture_output=True, text=True, timeout=300,
        env={**os.environ, "XSEARCH_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "stream.wav: not a regular file" in done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["added"] == 2 and report["files"] == 2
