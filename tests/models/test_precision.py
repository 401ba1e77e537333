"""Reduced CPU precision: which values are accepted where, what int8 changes in the model,
and how close bf16 and int8 vectors stay to fp32's (speed is measured in
`benchmarks/precision.py`)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from xsearch.errors import ParameterError
from xsearch.models.checkpoint import build_model
from xsearch.models.config import get_config
from xsearch.models.inference import prepare_for_inference
from xsearch.models.precision import (
    PRECISIONS,
    check_precision,
    precision_context,
    prepare_precision,
    quantizable_linears,
)

CPU = torch.device("cpu")
MIN_COSINE = {"bf16": 0.999, "int8": 0.99}


@pytest.fixture(scope="module")
def tiny():
    """The tiny AudioCLIP, seeded, prepared for inference; copy it before changing it."""
    torch.manual_seed(0)
    return prepare_for_inference(build_model(get_config("audioclip-tiny")), CPU)


def _inputs(cfg, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    size = cfg.vision.image_size
    images = torch.randn(4, 3, size, size, generator=gen)
    tokens = torch.randint(1, cfg.text.vocab_size - 2, (4, 12), generator=gen)
    tokens[:, 0] = cfg.text.vocab_size - 2  # start token
    tokens[torch.arange(4), torch.tensor([4, 11, 7, 9])] = cfg.text.vocab_size - 1  # end
    waves = torch.randn(2, cfg.audio.sample_rate // 4, generator=gen) * 3000
    return images.contiguous(memory_format=torch.channels_last), tokens, waves


def _embed(model, precision: str) -> dict[str, torch.Tensor]:
    images, tokens, waves = _inputs(model.config)
    with torch.inference_mode(), precision_context(precision, CPU):
        out = {
            "image": model.encode_image(images),
            "text": model.encode_text(tokens),
            "audio": model.encode_audio(waves),
        }
    return {k: v.float() for k, v in out.items()}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_runs_on_the_cpu(precision):
    assert check_precision(precision, "cpu") == precision


@pytest.mark.parametrize("value", ["fp16", "FP32", "", "int4"])
def test_unknown_precision_is_one_line_naming_the_choices(value):
    with pytest.raises(ParameterError) as err:
        check_precision(value, "cpu")
    assert err.value.param == "precision"
    assert "\n" not in str(err.value)
    assert "fp32, bf16, int8" in str(err.value)


def test_int8_is_refused_on_cuda_and_bf16_is_not():
    with pytest.raises(ParameterError, match="CPU only"):
        check_precision("int8", "cuda")
    with pytest.raises(ParameterError, match="CPU only"):
        prepare_precision(torch.nn.Linear(4, 4), "int8", torch.device("cuda"))
    assert check_precision("bf16", "cuda") == "bf16"


def test_fp32_leaves_the_model_and_its_outputs_as_they_were(tiny):
    before = _embed(tiny, "fp32")
    assert prepare_precision(tiny, "fp32", CPU) is tiny
    assert prepare_precision(tiny, "bf16", CPU) is tiny  # bf16 is an autocast, not new weights
    after = _embed(tiny, "fp32")
    for name in before:
        assert torch.equal(before[name], after[name]), name


def test_int8_quantizes_the_linear_layers_outside_the_attention_pool(tiny):
    model = copy.deepcopy(tiny)
    names = quantizable_linears(model)
    assert "audio.fc" in names and "transformer.resblocks.0.mlp.c_fc" in names
    assert not any(n.startswith("visual.attnpool") for n in names)
    assert not any(n.endswith("attn.out_proj") for n in names)

    assert prepare_precision(model, "int8", CPU) is model
    modules = dict(model.named_modules())
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    assert all(type(modules[n]) is dynamic for n in names)
    assert type(modules["visual.attnpool.q_proj"]) is torch.nn.Linear
    assert not any(type(m) is torch.nn.Linear for n, m in modules.items() if n in names)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.dtype == torch.float32 for m in convs)


def test_int8_leaves_layers_on_the_meta_device_alone(tiny):
    model = copy.deepcopy(tiny)
    model.audio.to("meta")  # a text-only model: the other towers were never loaded
    names = quantizable_linears(model)
    assert "audio.fc" not in names and "transformer.resblocks.0.mlp.c_fc" in names
    prepare_precision(model, "int8", CPU)
    assert type(model.audio.fc) is torch.nn.Linear


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_vectors_stay_close_to_fp32(tiny, precision):
    reference = _embed(tiny, "fp32")
    model = prepare_precision(copy.deepcopy(tiny), precision, CPU)
    reduced = _embed(model, precision)
    for name, ref in reference.items():
        cosine = torch.nn.functional.cosine_similarity(ref, reduced[name], dim=-1)
        assert cosine.min() >= MIN_COSINE[precision], (name, cosine.tolist())
        if precision == "bf16" or name == "text":  # int8 changes text; bf16 everything
            assert not torch.equal(ref, reduced[name]), name


def test_bf16_is_an_autocast_and_the_others_are_not():
    with precision_context("bf16", CPU):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    for precision in ("fp32", "int8"):
        with precision_context(precision, CPU):
            assert not torch.is_autocast_enabled("cpu")


# --- through the encoder and the API ------------------------------------------------------


@pytest.mark.parametrize("precision, floor", [("bf16", 0.999), ("int8", 0.99)])
def test_the_encoder_embeds_at_a_reduced_precision(precision, floor):
    from xsearch.models import load_encoder

    exact = load_encoder("random", config="audioclip-tiny", device="cpu", batch_size=4)
    reduced = load_encoder(
        "random", config="audioclip-tiny", device="cpu", batch_size=4, precision=precision
    )
    rng = np.random.default_rng(0)
    waves = [(rng.standard_normal(22050) * 3000).astype(np.float32) for _ in range(2)]
    texts = ["a dog barking", "rain on a roof"]
    for modality, items in (("text", texts), ("audio", waves)):
        a, b = exact.embed(modality, items), reduced.embed(modality, items)
        cosines = (a * b).sum(axis=1)
        assert cosines.min() >= floor, (modality, cosines)
    assert reduced.precision == precision


def test_an_unknown_precision_is_one_line_before_any_work(tmp_path):
    import xsearch
    from xsearch.errors import ParameterError
    from xsearch.models import load_encoder

    with pytest.raises(ParameterError, match="fp8"):
        xsearch.open("x", tmp_path, create=True, precision="fp8")
    with pytest.raises(ParameterError, match="fp8"):
        load_encoder("random", config="audioclip-tiny", device="cpu", precision="fp8")
