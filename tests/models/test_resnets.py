"""`resnets.py` rebuilds torchvision's ResNeXt and open_clip's ModifiedResNet over torch alone:
the same state-dict keys and shapes, the same weights from the same seed, the same outputs;
and embedding an image or a sound from the tower cache imports neither library."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xsearch.models.config import get_config
from xsearch.models.fuse import fold_batchnorms
from xsearch.models.resnets import ModifiedResNet, ResNetBody
from xsearch.models.towers import image_resnet

ROOT = Path(__file__).parents[2]
# torchvision imports torch._dynamo, the larger part of its cost; torch's meta-device
# arithmetic does too, which building a tower to load into must avoid
HEAVY = ("torchvision", "open_clip", "torch._dynamo")
TINY, FULL = get_config("audioclip-tiny"), get_config("audioclip")


def _torchvision_resnext(cfg, seed: int = 0):
    from torchvision.models.resnet import Bottleneck, ResNet

    torch.manual_seed(seed)
    return ResNet(
        Bottleneck,
        list(cfg.audio.layers),
        num_classes=cfg.embed_dim,
        groups=cfg.audio.groups,
        width_per_group=cfg.audio.width_per_group,
    )


def _our_resnext(cfg, seed: int = 0) -> ResNetBody:
    torch.manual_seed(seed)
    a = cfg.audio
    return ResNetBody(a.layers, cfg.embed_dim, groups=a.groups, width_per_group=a.width_per_group)


def _open_clip_resnet(cfg, seed: int = 0):
    from open_clip.modified_resnet import ModifiedResNet as OpenClipResNet

    torch.manual_seed(seed)
    v = cfg.vision
    heads = v.width * 32 // v.head_width
    return OpenClipResNet(list(v.layers), cfg.embed_dim, heads, v.image_size, v.width)


def _our_clip_resnet(cfg, seed: int = 0) -> ModifiedResNet:
    torch.manual_seed(seed)
    return image_resnet(cfg)


def _shapes(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in model.state_dict().items()]


def _randomise_batchnorms(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine terms (the defaults are 0/1, and bn3 starts
    at 0 in CLIP's blocks, which would hide a wrong residual branch)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


def _check_same(ours, theirs, image_size: int, batch: int = 2) -> None:
    """Same keys and shapes, in the same order; the same weights from the same seed; and,
    with `theirs`'s (randomised) weights loaded into `ours`, the same outputs."""
    assert _shapes(ours) == _shapes(theirs)
    for (key, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.equal(a, b), f"{key}: not the library's initialisation"
    _randomise_batchnorms(theirs, seed=1)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.eval(), ours.eval()
    x = torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected, got = theirs(x), ours(x)
    assert got.shape == expected.shape
    scale = float(expected.abs().max())
    assert scale > 0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * max(1.0, scale))
    # the folded forms agree too (fold_batchnorms knows the pairs of both)
    assert fold_batchnorms(ours) == fold_batchnorms(theirs) > 0
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4 * max(1.0, scale))


def test_resnext_body_equals_torchvision_tiny():
    _check_same(_our_resnext(TINY), _torchvision_resnext(TINY), image_size=64)


def test_clip_resnet_equals_open_clip_tiny():
    _check_same(_our_clip_resnet(TINY), _open_clip_resnet(TINY), TINY.vision.image_size)


@pytest.mark.slow  # a 25M-parameter ResNeXt-50 32x4d, built twice
def test_resnext_body_equals_torchvision_full():
    _check_same(_our_resnext(FULL), _torchvision_resnext(FULL), image_size=96, batch=1)


@pytest.mark.slow  # CLIP RN50, built twice, at 224 pixels
def test_clip_resnet_equals_open_clip_full():
    _check_same(_our_clip_resnet(FULL), _open_clip_resnet(FULL), FULL.vision.image_size)


def test_a_different_forward_with_the_same_keys_is_caught():
    """The comparison can fail: the attention pool with the wrong number of heads has the
    same keys and weights but gives other outputs."""
    v = TINY.vision
    torch.manual_seed(0)
    ours = ModifiedResNet(v.layers, TINY.embed_dim, 1, v.image_size, v.width)
    with pytest.raises(AssertionError):
        _check_same(ours, _open_clip_resnet(TINY), v.image_size)


def _run(code: str, cache: Path) -> str:
    env = {**os.environ, "XSEARCH_CACHE": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow  # two processes that import torch
def test_embedding_an_image_or_a_sound_imports_neither_torchvision_nor_open_clip(tmp_path):
    embed = (
        f"import numpy as np, sys\nHEAVY = {HEAVY!r}\n"
        "from xsearch.models import load_encoder\n"
        "enc = load_encoder('random', config='audioclip-tiny', device='cpu')\n"
        "image = np.zeros((3, 64, 64), np.float32)  # as the decode workers prepare it\n"
        "wave = np.random.default_rng(0).standard_normal(22050).astype(np.float32) * 3000\n"
        "rows = [enc.embed('image', [image]), enc.embed('audio', [wave])]\n"
        "assert all(r.shape == (1, 1024) for r in rows), [r.shape for r in rows]\n"
        "print(sorted(m for m in HEAVY if m in sys.modules))\n"
    )
    _run(embed, tmp_path)  # derives the tower cache (builds the whole model, open_clip's CLIP)
    assert _run(embed, tmp_path).strip() == "[]"  # maps the cached towers
