"""The CUDA path: fp16 autocast gives the CPU float32 results to fp16 precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from xsearch.models import resolve_device
from xsearch.models.checkpoint import build_model
from xsearch.models.config import get_config
from xsearch.models.encoder import AudioCLIPEncoder

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("config", ["audioclip-tiny", "audioclip"])
def test_cuda_fp16_matches_cpu(config):
    torch.manual_seed(0)
    cpu_model = build_model(get_config(config))
    torch.manual_seed(0)
    gpu_model = build_model(get_config(config))
    cpu = AudioCLIPEncoder(cpu_model, "cpu", batch_size=4)
    gpu = AudioCLIPEncoder(gpu_model, "cuda", batch_size=4)
    assert gpu.fp16 and not cpu.fp16

    rng = np.random.default_rng(0)
    texts = ["a dog barking", "rain on a tin roof", "church bells"]
    images = [Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)) for _ in "abc"]
    waves = [(rng.standard_normal(44100 * 2) * 3000).astype(np.float32) for _ in "abc"]
    quiet = np.zeros(44100 * 2, np.float32)  # digital silence around a tone: fp16 underflows
    quiet[30000:40000] = 3000 * np.sin(np.arange(10000) * 0.1)
    waves.append(quiet)
    for name, a, b in (
        ("text", cpu.embed_text(texts), gpu.embed_text(texts)),
        ("image", cpu.embed_images(images), gpu.embed_images(images)),
        ("audio", cpu.embed_audio(waves), gpu.embed_audio(waves)),
    ):
        assert np.isfinite(b).all(), name
        cos = (a * b).sum(axis=1)
        assert cos.min() > 0.99, (name, cos)


def test_auto_device_picks_cuda():
    assert resolve_device("auto") == "cuda"
