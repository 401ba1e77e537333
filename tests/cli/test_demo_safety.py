"""The demo works in its own index and never changes one it did not create."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.store import add_asset
from xsearch.store.store import Changes, Writer

OTHER_MODEL = {"encoder": "audioclip", "config": "audioclip", "weights": "ab" * 32}


def files_digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_demo_refuses_a_user_index_of_another_model_and_leaves_it_untouched(tmp_path):
    home = tmp_path / "home"
    with Writer(home / "demo", OTHER_MODEL) as writer:
        changes = Changes()
        add_asset(writer, changes, "/m/mine.wav", 3)
        writer.commit(changes)
    before = files_digest(home / "demo")
    args = ["demo", "--no-fetch", "--config", "audioclip-tiny", "--folder", str(tmp_path / "m")]
    result = run_cli(*args, env={"XSEARCH_HOME": str(home)})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not made by the demo" in lines[0], result.stderr
    assert files_digest(home / "demo") == before


@pytest.mark.slow  # the whole demo, twice, in real processes
def test_demo_rebuilds_its_own_index_when_the_weights_change(tmp_path, tiny_checkpoint):
    home = tmp_path / "home"
    env = {"XSEARCH_HOME": str(home)}
    args = ["demo", "--no-fetch", "--folder", str(tmp_path / "m"), "--index", "mine"]
    first = run_cli(*args, "--weights", "random", "--config", "audioclip-tiny", env=env)
    assert first.returncode == 0, first.stderr
    again = run_cli(*args, "--weights", str(tiny_checkpoint), env=env)
    assert again.returncode == 0, again.stderr
    assert "rebuilt the demo's index mine" in again.stderr
    manifest = json.loads((home / "mine" / "manifest.json").read_text())
    assert manifest["model"]["weights"] != "random"
    assert manifest["generation"] == 1  # a fresh index, not the random one's next generation
