"""Checkpoint reading and checking: official key layout, clear errors, no pickle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xsearch.errors import CheckpointError
from xsearch.models.checkpoint import (
    build_model,
    checkpoint_config,
    config_for,
    expected_shapes,
    load_checkpoint,
    read_shapes,
    read_state_dict,
)
from xsearch.models.checkpoint_files import describe_non_checkpoint
from xsearch.models.config import get_config

# Every key, shape and dtype of the official checkpoint, as published with AudioCLIP v0.1.
OFFICIAL = Path(__file__).resolve().parents[1] / "data" / "audioclip_state_dict.tsv"


def official_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in OFFICIAL.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, _dtype = line.split("\t")
        inner = shape.strip("()").strip(",")
        shapes[key] = tuple(int(d) for d in inner.split(",") if d.strip())
    return shapes


def test_full_architecture_has_exactly_the_official_keys_and_shapes():
    ours = expected_shapes(get_config("audioclip"))
    theirs = official_shapes()
    assert len(theirs) == 861
    assert ours == theirs
    assert sum(torch.Size(s).numel() for s in ours.values()) == 134_246_925


def test_tiny_checkpoint_loads_and_is_detected(tiny_checkpoint):
    model = load_checkpoint(tiny_checkpoint)
    assert model.config.name == "audioclip-tiny"
    assert not model.training
    state = torch.load(tiny_checkpoint, weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_mismatch_names_missing_unexpected_and_misshaped(tiny_checkpoint, tmp_path):
    state = torch.load(tiny_checkpoint, weights_only=True)
    del state["audio.fc.weight"]
    state["audio.extra"] = torch.zeros(2)
    state["visual.conv1.weight"] = torch.zeros(3, 3)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad, config="audioclip-tiny")
    message = str(info.value)
    assert "missing: audio.fc.weight" in message
    assert "unexpected: audio.extra" in message
    assert "mis-shaped: visual.conv1.weight (3, 3) instead of" in message
    assert "\n" not in message and str(bad) in message


def test_wrong_config_is_reported(tiny_checkpoint):
    state = read_state_dict(tiny_checkpoint)
    with pytest.raises(CheckpointError, match="'audioclip' architecture"):
        config_for(state, "audioclip")


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    sentinel = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    path = tmp_path / "evil.pt"
    torch.save({"visual.conv1.weight": torch.zeros(1), "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused for safety"):
        read_state_dict(path)
    assert not sentinel.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_garbage_files_give_one_line_errors(tmp_path, content):
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def _jpeg(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(path, format="JPEG")


def _random_bytes(path: Path) -> None:
    import numpy as np

    data = np.random.default_rng(7).bytes(4096)
    path.write_bytes(b"\x13" + data)  # no byte of a checkpoint's own first bytes


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (_random_bytes, "random bytes"),
        (_jpeg, "a JPEG image"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("weights go here\nsee the README\n"), "a text file"),
        (lambda p: p.write_text("<!DOCTYPE html><html>sign in</html>"), "an HTML page"),
    ],
    ids=["random", "jpeg", "empty", "text", "html"],
)
def test_a_file_that_is_no_checkpoint_says_what_it_is(tmp_path, make, what):
    path = tmp_path / "weights.pt"
    make(path)
    for read in (read_state_dict, load_checkpoint, read_shapes):
        with pytest.raises(CheckpointError) as info:
            read(path)
        message = str(info.value)
        assert f"{path} is not a PyTorch checkpoint (it looks like {what}" in message
        assert "\n" not in message and "Python objects" not in message


def test_a_real_checkpoint_is_not_described_as_something_else(tiny_checkpoint):
    assert describe_non_checkpoint(tiny_checkpoint) is None


def test_shapes_identify_the_config_without_reading_the_data(tiny_checkpoint):
    shapes = read_shapes(tiny_checkpoint)
    assert all(t.is_meta for t in shapes.values())
    assert checkpoint_config(tiny_checkpoint).name == "audioclip-tiny"
    with pytest.raises(CheckpointError, match="'audioclip' architecture") as info:
        checkpoint_config(tiny_checkpoint, "audioclip")
    assert str(tiny_checkpoint) in str(info.value)


def test_truncated_checkpoint_is_an_error(tiny_checkpoint, tmp_path):
    data = tiny_checkpoint.read_bytes()
    path = tmp_path / "half.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_non_state_dict_objects_are_refused(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(path)


def test_wrapped_state_dict_is_accepted(tiny_checkpoint, tmp_path):
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": torch.load(tiny_checkpoint, weights_only=True)}, path)
    assert load_checkpoint(path).config.name == "audioclip-tiny"


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_state_dict(tmp_path / "nope.pt")


def test_random_model_round_trips_through_a_checkpoint(tmp_path):
    torch.manual_seed(3)
    model = build_model(get_config("audioclip-tiny"))
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    again = load_checkpoint(path)
    tokens = torch.tensor([[49406, 320, 1929, 49407]])
    with torch.inference_mode():
        assert torch.allclose(model.encode_text(tokens), again.encode_text(tokens))


def test_logit_scales_are_clamped_exp(tiny_checkpoint):
    model = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)  # exp(10) > 100
        model.logit_scale_at.fill_(-1.0)  # exp(-1) < 1
    scales = model.logit_scales()
    assert scales["image-text"] == 100.0
    assert scales["audio-text"] == 1.0
    assert scales["audio-image"] == pytest.approx(100.0)
