"""benchmarks/clap_tables.py: its plan without datasets, and a run on generated collections in
each dataset's layout with the tiny AudioCLIP's random weights."""

from __future__ import annotations

import json

import pytest

from benchmarks import clap_tables
from tests.helpers.caption_layouts import write_audiocaps, write_clotho
from tests.helpers.eval_layouts import write_esc50, write_urbansound8k


def test_without_datasets_it_prints_the_plan(capsys):
    assert clap_tables.main(["--model", "laion-clap"]) == {}
    printed = capsys.readouterr().out
    assert "models: laion-clap" in printed and "--clotho ROOT" in printed
    assert "92.75" in printed and "93.90" in printed and "69.40" in printed
    assert "not confirmed" in printed


def test_published_numbers_name_their_source():
    for (model, dataset, _), number in clap_tables.PUBLISHED.items():
        assert dataset in clap_tables.DATASETS and model in clap_tables.PROMPTS
        assert 0 < number.value <= 100 and number.source and number.scope
    assert clap_tables.published("laion-clap-tiny", "esc50", "zero-shot").scope == "fold 1"
    assert clap_tables.published("laion-clap", "clotho", "text:audio R@1") is None


@pytest.mark.slow  # loads the tiny AudioCLIP and builds four evaluation indexes
def test_tables_on_generated_layouts(tmp_path, capsys):
    roots = {
        "esc50": write_esc50(tmp_path / "esc50", classes=3, per_class=2, folds=2).root,
        "urbansound8k": write_urbansound8k(tmp_path / "us8k", classes=2, per_class=2).root,
        "clotho": write_clotho(tmp_path / "clotho", clips=3).root,
        "audiocaps": write_audiocaps(tmp_path / "audiocaps", clips=3).root,
    }
    args = [x for kind, root in roots.items() for x in (f"--{kind}", str(root))]
    out = tmp_path / "tables.json"
    report = clap_tables.main([*args, "--model", "audioclip-tiny", "--weights", "random",
                               "--device", "cpu", "--workers", "0",
                               "--home", str(tmp_path / "home"), "--out", str(out)])  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    printed = capsys.readouterr().out
    assert "zero-shot accuracy" in printed and "caption retrieval" in printed
    assert "69.40" in printed  # the AudioCLIP paper's ESC-50 number beside ours
    data = report["models"]["audioclip-tiny"]
    assert data["weights"] == "random"
    esc50 = data["datasets"]["esc50"]["zero_shot"]
    assert sorted(esc50["per_fold"]) == [1, 2] and 0 <= esc50["all"] <= 100
    assert esc50["mean of folds"] == pytest.approx(sum(esc50["per_fold"].values()) / 2)
    for kind in ("clotho", "audiocaps"):
        captions = data["datasets"][kind]["captions"]
        assert set(captions) == {"text:audio", "audio:text"}
        assert captions["text:audio"]["queries"] == 15 and captions["audio:text"]["queries"] == 3
        assert all(0 <= captions["audio:text"][m] <= 100 for m in ("R@1", "R@10", "mAP@10"))
