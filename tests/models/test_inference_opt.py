"""The CPU speed rewrites of `prepare_for_inference` keep the results: BatchNorm folding
and the cached frontend matrix."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from torch import nn

from xsearch.models.audio_frontend import FrequencyBSpline
from xsearch.models.checkpoint import build_model
from xsearch.models.config import get_config
from xsearch.models.fuse import fold_batchnorms
from xsearch.models.inference import prepare_for_inference

MIN_COSINE = 0.99999


def _randomise_batchnorms(model: nn.Module, seed: int = 0) -> int:
    """Non-trivial statistics and affine parameters, so that a folding bug shows (fresh
    BatchNorms are the identity, and open_clip zero-initialises every bn3 weight)."""
    gen = torch.Generator().manual_seed(seed)
    count = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
                count += 1
    return count


def _model(config: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(get_config(config))
    assert _randomise_batchnorms(model) > 0
    # The frontend starts as a plain windowed DFT; move it off that point as well.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, FrequencyBSpline):
                m.m.add_(0.3)
                m.fb.mul_(1.2)
    return model


def _inputs(model: nn.Module, seed: int = 0):
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    size = cfg.vision.image_size
    images = torch.randn(3, 3, size, size, generator=gen)
    tokens = torch.randint(1, cfg.text.vocab_size - 2, (3, 12), generator=gen)
    tokens[:, 0] = cfg.text.vocab_size - 2  # start token
    tokens[0, 5], tokens[1, 11], tokens[2, 8] = (cfg.text.vocab_size - 1,) * 3  # end tokens
    rate = cfg.audio.sample_rate
    waves = [
        torch.randn(2, rate, generator=gen) * 3000,
        torch.randn(1, rate // 3, generator=gen) * 3000,
    ]
    return images, tokens, waves


def _outputs(model: nn.Module, inputs) -> dict[str, torch.Tensor]:
    images, tokens, waves = inputs
    with torch.inference_mode():
        out = {
            "image": model.encode_image(images.contiguous(memory_format=torch.channels_last)),
            "text": model.encode_text(tokens),
        }
        for i, wave in enumerate(waves):
            out[f"audio{i}"] = model.encode_audio(wave)
    return out


def _check_same(plain: dict[str, torch.Tensor], fast: dict[str, torch.Tensor]) -> None:
    for name, ref in plain.items():
        got = fast[name]
        assert got.shape == ref.shape, name
        assert torch.isfinite(got).all(), name
        cos = nn.functional.cosine_similarity(ref.double(), got.double(), dim=-1)
        assert cos.min().item() >= MIN_COSINE, f"{name}: cosine {cos.min().item():.7f}"


def _check_prepared(config: str) -> None:
    model = _model(config)
    plain = prepare_for_inference(copy.deepcopy(model), torch.device("cpu"), optimize=False)
    fast = prepare_for_inference(model, torch.device("cpu"))

    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules()) > 0

    inputs = _inputs(model)
    reference = _outputs(plain, inputs)
    _check_same(reference, _outputs(fast, inputs))
    _check_same(reference, _outputs(fast, inputs))  # again: the cached frontend matrix


def test_optimised_tiny_model_gives_the_same_embeddings():
    _check_prepared("audioclip-tiny")


@pytest.mark.slow  # the full-size model
def test_optimised_full_model_gives_the_same_embeddings():
    start = time.perf_counter()
    _check_prepared("audioclip")
    assert time.perf_counter() - start < 120  # a guard against this test going slow


def test_folding_each_batchnorm_kind():
    """Folding alone (no channels-last, no cache) matches: stems, Bottlenecks, downsamples
    and the audio attention gates."""
    model = _model("audioclip-tiny").eval()
    folded = copy.deepcopy(model)
    # audio: stem 1 + 4 blocks x 3 + 4 downsamples + 5 gates; image: stem 3 + 4 x 3 + 4
    assert fold_batchnorms(folded) == 22 + 19
    inputs = _inputs(model, seed=1)
    _check_same(_outputs(model, inputs), _outputs(folded, inputs))


def test_training_mode_batchnorms_are_left_alone():
    model = _model("audioclip-tiny").train()
    assert fold_batchnorms(model) == 0
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_tensors_shared_with_a_loaded_state_dict_are_not_modified():
    model = _model("audioclip-tiny")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    kept = {k: v.clone() for k, v in state.items()}
    loaded = build_model(get_config("audioclip-tiny"), state)  # uses `state`'s tensors
    prepare_for_inference(loaded, torch.device("cpu"))
    for key, value in state.items():
        assert torch.equal(value, kept[key]), key


def test_optimised_model_under_autocast_and_with_gradients():
    """The folded model stays usable under autocast (the CUDA path) and for gradients."""
    model = _model("audioclip-tiny")
    plain = prepare_for_inference(copy.deepcopy(model), torch.device("cpu"), optimize=False)
    fast = prepare_for_inference(model, torch.device("cpu"))
    images, _, waves = _inputs(model)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = plain.encode_audio(waves[0]), fast.encode_audio(waves[0])
    assert nn.functional.cosine_similarity(a.float(), b.float()).min() > 0.99

    fast.requires_grad_(True)
    x = images.clone().requires_grad_(True)
    out = fast.encode_image(x)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with torch.inference_mode():
        ref = plain.encode_image(images)
    _check_same({"image": ref}, {"image": out.detach()})
    # the frontend matrix is recomputed, not cached, while its parameters take gradients
    wave = waves[1]
    _check_same({"audio": plain.encode_audio(wave)}, {"audio": fast.encode_audio(wave).detach()})
    assert fast.audio.fbsp.matrix(model.config.audio.n_fft).requires_grad


def test_frontend_matrix_is_cached_and_follows_parameter_changes():
    model = prepare_for_inference(_model("audioclip-tiny"), torch.device("cpu"))
    fbsp = model.audio.fbsp
    n_fft = model.config.audio.n_fft
    with torch.inference_mode():
        first = fbsp.matrix(n_fft)
        assert fbsp.matrix(n_fft) is first
    with torch.no_grad():
        fbsp.fc.add_(1.0)
    with torch.inference_mode():
        changed = fbsp.matrix(n_fft)
    assert changed is not first
    assert torch.allclose(changed, type(fbsp).matrix(fbsp, n_fft))
    assert not torch.allclose(changed, first)


@pytest.mark.parametrize("config", ["audioclip-tiny"])
def test_state_dict_keys_change_only_by_folding(config):
    model = _model(config)
    before = set(model.state_dict())
    after = set(prepare_for_inference(model, torch.device("cpu")).state_dict())
    gone = before - after
    assert gone and all(".bn" in k or "downsample.1." in k for k in gone)
    assert all(k.endswith(".bias") for k in after - before)
