"""benchmarks/audioclip_tables.py on generated collections in each dataset's layout."""

from __future__ import annotations

import json

import pytest

from benchmarks import audioclip_tables
from tests.helpers.eval_layouts import (
    write_audioset,
    write_esc50,
    write_folders,
    write_urbansound8k,
)


@pytest.mark.slow  # builds and evaluates every dataset layout
def test_tables_on_generated_layouts(tmp_path, capsys):
    roots = {
        "esc50": write_esc50(tmp_path / "esc50", classes=3, per_class=2, folds=2).root,
        "urbansound8k": write_urbansound8k(tmp_path / "us8k", classes=3, per_class=2).root,
        "audioset": write_audioset(tmp_path / "audioset", classes=3, per_class=2).root,
        "imagenet": write_folders(tmp_path / "imagenet", classes=3, per_class=3).root,
    }
    args = [x for kind, root in roots.items() for x in (f"--{kind}", str(root))]
    out = tmp_path / "tables.json"
    report = audioclip_tables.main([*args, "--weights", "random", "--config", "audioclip-tiny",
                                    "--device", "cpu", "--home", str(tmp_path / "home"),
                                    "--out", str(out)])  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    printed = capsys.readouterr().out
    assert "Table 3" in printed and "Table 4" in printed and "69.40" in printed
    data = report["datasets"]
    for kind in ("esc50", "urbansound8k"):
        zero = data[kind]["zero_shot"]
        assert sorted(zero["per_fold"]) == [1, 2]
        assert zero["mean"] == pytest.approx(sum(zero["per_fold"].values()) / 2)
        assert all(0 <= v <= 100 for v in zero["per_fold"].values())
    assert set(data["audioset"]["querying"]) == {
        "text:image", "text:audio", "audio:image", "image:audio"
    }  # fmt: skip
    assert data["audioset"]["left_out"] == 0 and data["audioset"]["indexed"] == 6
    assert set(data["imagenet"]["querying"]) == {"text:image"}
    text_audio = data["esc50"]["querying"]["text:audio"]
    assert text_audio["queries"] == 3 and 0 <= text_audio["mAP"] <= 1
    assert "audio" not in data["imagenet"].get("zero_shot", {})  # Table 3 is audio datasets only
