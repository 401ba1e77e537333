"""The CLAP models on CUDA under fp16 autocast give the CPU's float32 vectors to fp16
precision, quiet and silent clips included (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

TEXTS = ["a dog barking", "rain on a tin roof", "x", "an alarm clock ringing loudly"]


def _clips(rate: int) -> list[np.ndarray]:
    """Loud, quiet (-70 dBFS) and digitally silent stretches, short and long."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * rate) / rate
    tone = 8000 * np.sin(2 * np.pi * 440 * t)
    quiet = 10 * rng.standard_normal(2 * rate)
    gap = np.concatenate([tone[:rate], np.zeros(rate), tone[:rate]])
    noise = 3000 * rng.standard_normal(rate // 2)
    return [w.astype(np.float32) for w in (tone, quiet, gap, noise)]


@pytest.mark.parametrize("model", ["laion-clap-tiny", "msclap-2023-tiny", "laion-clap"])
def test_fp16_on_cuda_matches_float32_on_cpu(model):
    from xsearch.models import load_encoder

    cpu = load_encoder("random", config=model, device="cpu", seed=3)
    gpu = load_encoder("random", config=model, device="cuda", seed=3)  # fp16 autocast
    assert cpu.sample_rate is not None
    waves = _clips(cpu.sample_rate)
    for modality, items in (("audio", waves), ("text", TEXTS)):
        a, b = cpu.embed(modality, items), gpu.embed(modality, items)
        assert np.isfinite(b).all()
        cosines = np.sum(a * b, axis=1)
        assert cosines.min() > 0.999, (modality, cosines)
