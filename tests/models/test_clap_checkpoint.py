"""Official-container CLAP checkpoints load strictly; anything else is one CheckpointError line,
and no pickle payload ever runs."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from xsearch.errors import CheckpointError
from xsearch.models.clap import build_clap
from xsearch.models.clap_checkpoint import load_clap_model, load_clap_state
from xsearch.models.clap_config import clap_config

LAION = clap_config("laion-clap-tiny")
MS = clap_config("msclap-2023-tiny")


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    return build_clap(cfg)


def _laion_file(model, **extra):
    """What the LAION training script saved: module.-prefixed keys (DDP), the position_ids
    buffer, and an optimizer whose learning rate is a NumPy float64 (its cosine schedule)."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.text_branch.embeddings.position_ids"] = torch.arange(80)[None]
    lr = 0.5 * (1 + np.cos(np.pi * 3 / 10)) * 1e-4
    optimizer = {"state": {}, "param_groups": [{"lr": lr, "betas": (0.9, 0.99), "params": [0]}]}
    return {"epoch": 45, "name": "tiny", "state_dict": state, "optimizer": optimizer, **extra}


def _ms_file(model):
    """MS CLAP's container, with the GPT-2 buffers old transformers versions saved."""
    state = dict(model.state_dict())
    for i in range(MS.text.layers):
        state[f"caption_encoder.base.h.{i}.attn.bias"] = torch.ones(1, 1, 8, 8).tril()
        state[f"caption_encoder.base.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    return {"model": state}


def _same_outputs(a, b, cfg):
    waves = torch.randn(2, cfg.audio.clip_samples) * 0.1
    ids = torch.tensor([[0, 9, 10, 2, 1], [0, 11, 2, 1, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        torch.testing.assert_close(a.audio_embedding(waves), b.audio_embedding(waves))
        torch.testing.assert_close(a.text_embedding(ids, mask), b.text_embedding(ids, mask))


def test_laion_container_loads_strictly(tmp_path):
    model = _model(LAION)
    path = tmp_path / "630k-tiny.pt"
    torch.save(_laion_file(model), path)
    loaded = load_clap_model(path, LAION)
    assert not loaded.training
    _same_outputs(model, loaded, LAION)
    state = load_clap_state(path, LAION)
    assert set(state) == set(model.state_dict())  # prefix stripped, position_ids dropped


def test_ms_container_loads_strictly_without_old_gpt2_buffers(tmp_path):
    model = _model(MS)
    path = tmp_path / "CLAP_weights_tiny.pth"
    torch.save(_ms_file(model), path)
    _same_outputs(model, load_clap_model(path, MS), MS)


def test_shifted_window_masks_are_stored_and_loaded(tmp_path):
    """The official files hold each shifted block's attention mask; the tiny configs have no
    shifted block, so this one has two blocks per stage."""
    htsat = dataclasses.replace(MS.audio.htsat, depths=(2, 2, 2, 2))
    cfg = dataclasses.replace(MS, audio=dataclasses.replace(MS.audio, htsat=htsat))
    model = _model(cfg)
    contents = _ms_file(model)
    key = "audio_encoder.base.htsat.layers.0.blocks.1.attn_mask"
    assert contents["model"][key].shape == (16, 16, 16)
    path = tmp_path / "shifted.pth"
    torch.save(contents, path)
    loaded = load_clap_model(path, cfg)
    assert torch.equal(loaded.state_dict()[key], model.state_dict()[key])
    _same_outputs(model, loaded, cfg)
    del contents["model"][key]
    torch.save(contents, path)
    _one_line_error(path, cfg, f"missing: {key}")


def test_a_file_saved_with_numpy_1_names_loads(tmp_path):
    """NumPy 1 pickled its scalars as numpy.core.multiarray.scalar; the real LAION files do."""
    path = tmp_path / "legacy.pt"
    torch.save(_laion_file(_model(LAION)), path, _use_new_zipfile_serialization=False)
    raw = path.read_bytes()
    old = raw.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
    assert old != raw
    path.write_bytes(old)
    assert load_clap_state(path, LAION)


def _one_line_error(path, cfg, *match):
    with pytest.raises(CheckpointError) as caught:
        load_clap_model(path, cfg)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for part in match:
        assert part in message, message
    return message


def test_wrong_keys_and_shapes_are_one_line_naming_them(tmp_path):
    model = _model(LAION)
    contents = _laion_file(model)
    state = contents["state_dict"]
    del state["module.audio_branch.bn0.weight"]
    state["module.audio_branch.extra.weight"] = torch.zeros(2)
    state["module.text_projection.0.weight"] = torch.zeros(3, 3)
    path = tmp_path / "bad.pt"
    torch.save(contents, path)
    _one_line_error(
        path,
        LAION,
        "missing: audio_branch.bn0.weight",
        "unexpected: audio_branch.extra.weight",
        "text_projection.0.weight (3, 3) instead of (32, 32)",
    )


def test_another_models_file_is_named_for_what_it_lacks(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(_ms_file(_model(MS)), path)  # an MS CLAP file given as LAION-CLAP
    _one_line_error(path, LAION, "keeps its weights under 'state_dict'", "holds 'model'")
    bare = tmp_path / "bare.pth"
    torch.save(_model(MS).state_dict(), bare)  # a bare state dict of the other model
    message = _one_line_error(bare, LAION, "not a laion-clap-tiny checkpoint", "in all)")
    assert len(message) < 1000


def test_a_pickle_payload_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _laion_file(_model(LAION))["state_dict"], "x": Payload()}, path)
    _one_line_error(path, LAION, "refused", "system", "nothing in it was run")
    assert not marker.exists()


def test_numpy_objects_beyond_float64_scalars_are_refused(tmp_path):
    path = tmp_path / "int64.pt"
    torch.save(_laion_file(_model(LAION), step=np.int64(7)), path)
    _one_line_error(path, LAION, "refused")


def test_files_that_are_not_checkpoints(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not weights\n")
    _one_line_error(text, LAION, "not a PyTorch checkpoint", "text file")
    _one_line_error(tmp_path / "absent.pt", LAION, "no such checkpoint file")
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    _one_line_error(tensor, LAION, "no state dict")
    truncated = tmp_path / "cut.pt"
    torch.save(_laion_file(_model(LAION)), truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    _one_line_error(truncated, LAION, "not a loadable PyTorch checkpoint")
