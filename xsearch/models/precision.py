"""Reduced precision for embedding on a CPU, opt-in: fp32 (the default), bf16 or int8.

- fp32: the model as it is, the reference vectors.
- bf16: the weights stay float32 and the model runs under `torch.autocast("cpu", bfloat16)`,
  which casts the inputs of convolutions and matmuls per call and keeps norms and softmax in
  float32. Converting the weights to bfloat16 instead measured no faster. It pays only on
  CPUs with bfloat16 instructions (AVX512-BF16, AMX); with AVX2 alone torch has no fast kernels
  for it and it is several times slower than fp32 (`benchmarks/precision.py`).
- int8: torch's dynamic quantization of the `nn.Linear` layers (int8 weights, activations
  quantized per batch): the text transformer's MLPs and the audio head. Convolutions stay
  float32, so the image and audio towers barely change; the attention pool of the image tower
  and the text attention keep float32 too, because their forward reads the projection weights
  as tensors, which a quantized layer no longer has.

On CUDA the encoder keeps its own fp16 autocast for fp32; bf16 becomes a bfloat16 autocast
there, and int8 is refused (the dynamic quantized kernels are CPU-only).

This module imports torch only when a model is prepared, so arguments can be checked first.
"""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from xsearch.errors import ParameterError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16", "int8")
DEFAULT_PRECISION = "fp32"


def check_precision(value: str, device_type: str) -> str:
    """`value` when it is a precision `device_type` ("cpu", "cuda") can run, else a
    ParameterError that says what to use."""
    if value not in PRECISIONS:
        raise ParameterError(
            "precision", f"unknown precision {value!r}; choose one of {', '.join(PRECISIONS)}"
        )
    if value == "int8" and device_type != "cpu":
        raise ParameterError(
            "precision",
            f"int8 runs on the CPU only (no {device_type} kernels); use fp32 or bf16 there",
        )
    return value


def prepare_precision(
    model: torch.nn.Module, precision: str, device: torch.device
) -> torch.nn.Module:
    """`model` ready to run at `precision` on `device` (with `precision_context`).

    fp32 and bf16 return `model` untouched. int8 swaps its quantizable `nn.Linear` layers for
    dynamically quantized ones, in place, like `prepare_for_inference` (prepare for inference
    first: BatchNorm folding needs float convolutions, which int8 keeps anyway)."""
    check_precision(precision, device.type)
    if precision != "int8":
        return model
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    if torch.backends.quantized.engine == "none":
        raise ParameterError("precision", "int8: this torch build has no quantized CPU engine")
    layers = quantizable_linears(model)
    if not layers:
        return model
    with warnings.catch_warnings():
        # torch marks its eager quantization deprecated in favour of torchao (not a dependency)
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization.*deprecated")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated")
        quantize_dynamic(
            model,
            {name: default_dynamic_qconfig for name in layers},
            dtype=torch.qint8,
            inplace=True,
        )
    return model


def quantizable_linears(model: torch.nn.Module) -> list[str]:
    """Names of the `nn.Linear` layers that int8 quantizes: exactly `nn.Linear` (the attention
    output projections are a subclass torch leaves alone), not inside an attention pool,
    which hands the layers' weights to `multi_head_attention_forward` itself, and not left
    on the meta device (the unloaded towers of a text-only model)."""
    import torch
    from open_clip.modified_resnet import AttentionPool2d

    pooled = {
        f"{name}.{child}" if name else child
        for name, module in model.named_modules()
        if isinstance(module, AttentionPool2d)
        for child, _ in module.named_children()
    }
    return [
        name
        for name, module in model.named_modules()
        if type(module) is torch.nn.Linear and name not in pooled and not module.weight.is_meta
    ]


def precision_context(precision: str, device: torch.device) -> AbstractContextManager:
    """The context to run the model in: bf16 -> a bfloat16 autocast on `device`; fp32 and
    int8 (its kernels quantize activations themselves) -> nothing. The encoder's fp16
    autocast on CUDA is its own business, not this one's."""
    if precision != "bf16":
        return nullcontext()
    import torch

    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ParameterError("precision", "bf16: this GPU has no bfloat16 support; use fp32")
    return torch.autocast(device.type, dtype=torch.bfloat16)
