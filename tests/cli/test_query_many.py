"""`xsearch query` with several --index: one ranking over indexes of different models, an
index column in the table, "index" in each JSON line; one --index behaves as it always did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers.cli import run_cli
from tests.helpers.several import fake_models, make_home
from xsearch.api import search_indexes
from xsearch.cli.main import app
from xsearch.samples import audio_samples, image_samples, write_wav

runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory, fake_media_index) -> Path:
    return make_home(tmp_path_factory.mktemp("several") / "home", fake_media_index)


@pytest.fixture
def home(built, monkeypatch, runtime_dir) -> Path:
    """The indexes of tests.helpers.several, opened by name with their fake models; no
    resident process holds them (a private runtime folder)."""
    fake_models(monkeypatch)
    monkeypatch.setenv("XSEARCH_HOME", str(built))
    return built


def invoke(*args: str):
    return runner.invoke(app, ["query", *args], env={"COLUMNS": "200"})


def json_lines(done) -> list[dict]:
    assert done.exit_code == 0, done.output
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_json_lines_carry_their_index_and_its_generation(home):
    done = invoke("-i", "pictures", "-i", "sounds", "--text", "rain^2", "-k", "8", "--json")
    lines = json_lines(done)
    hits = search_indexes(["pictures", "sounds"], text=[("rain", 2.0)], k=8, root=home)
    assert lines == [{**hit.as_dict(), "generation": 1} for hit in hits]
    assert {line["index"] for line in lines} == {"pictures", "sounds"}
    assert [line["rank"] for line in lines] == list(range(1, 9))


def test_the_table_gains_an_index_column(home):
    done = invoke("-i", "sounds", "-i", "pictures", "--text", "rain", "-k", "12")
    assert done.exit_code == 0, done.output
    header = next(line for line in done.stdout.splitlines() if "score" in line)
    assert header.index("#") < header.index("index") < header.index("score")
    assert "pictures" in done.stdout and "sounds" in done.stdout


def test_one_index_gives_what_it_always_gave(home):
    lines = json_lines(invoke("-i", "pictures", "--text", "rain", "--json"))
    assert lines and all("index" not in line and line["generation"] == 1 for line in lines)
    table = invoke("-i", "pictures", "--text", "rain")
    assert " index " not in table.stdout and "pictures" not in table.stdout


def test_an_index_that_cannot_answer_is_skipped_with_its_reason(home):
    done = invoke("-i", "sounds", "-i", "pictures", "--text", "sky", "--target", "image")
    assert done.exit_code == 0, done.output
    reason = "skipped index sounds: has no target image: its model (fake-512-audio-text)"
    assert reason in done.stderr and "sky.png" in done.stdout


@pytest.mark.parametrize(
    "indexes, option, error",
    [
        ("sounds pictures", ["--like", "3"], "--like takes item ids, which belong to one index"),
        ("sounds pictures", ["-w", "random"], "--weights names one model's checkpoint"),
        ("sounds pictures", ["--where", "no_such_column = 1"], "--where: bad filter"),
        ("sounds quiet", ["--target", "image"], "no index can answer this query: sounds has"),
        ("sounds pictures sounds", [], "--index: sounds given twice"),
        ("sounds nothing", [], "no index at"),
    ],
)
def test_errors_are_one_line(home, indexes, option, error):
    chosen = [arg for name in indexes.split() for arg in ("-i", name)]
    done = invoke(*chosen, "--text", "sky", *option)
    assert done.exit_code == 2, done.output
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: {error}")


@pytest.mark.slow  # ingests and queries in real processes, with the tiny AudioCLIP
def test_several_indexes_in_a_real_process(tmp_path):
    pictures, sounds = tmp_path / "pictures", tmp_path / "sounds"
    pictures.mkdir(), sounds.mkdir()
    for name, image in list(image_samples((96, 64)).items())[:2]:
        image.save(pictures / name)
    for name in ("tone_440hz.wav", "siren.wav"):
        write_wav(sounds / name, audio_samples(seconds=1.0)[name])
    env = {"XSEARCH_HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(tmp_path)}
    model = ("--weights", "random", "--config", "audioclip-tiny", "--device", "cpu")
    for folder in (pictures, sounds):
        done = run_cli("ingest", str(folder), "-i", folder.name, *model, "--workers", "0", env=env)
        assert done.returncode == 0, done.stderr
    ask = ("query", "-i", "pictures", "-i", "sounds", "--text", "a dog", "--device", "cpu")
    everything = run_cli(*ask, "--target", "all", "--json", env=env)
    assert everything.returncode == 0, everything.stderr
    lines = [json.loads(line) for line in everything.stdout.splitlines()]
    assert sorted(line["index"] for line in lines) == ["pictures"] * 2 + ["sounds"] * 2
    assert [line["score"] for line in lines] == sorted((x["score"] for x in lines), reverse=True)
    images = run_cli(*ask, "--target", "image", env=env)
    assert images.returncode == 0, images.stderr
    assert "skipped index sounds: holds no image items" in images.stderr
    shutil.rmtree(tmp_path / "home" / "pictures")
    gone = run_cli(*ask, env=env)
    assert gone.returncode == 2 and gone.stderr.count("error:") == 1
    assert "Traceback" not in gone.stderr
