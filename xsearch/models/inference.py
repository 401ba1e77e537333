"""Placing a model for inference: device, memory layout."""

from __future__ import annotations

import torch

from xsearch.models.audioclip import AudioCLIP


def prepare_for_inference(model: AudioCLIP, device: torch.device) -> AudioCLIP:
    """Eval mode, no gradients, on `device`, convolutions in channels-last layout (oneDNN and
    cuDNN run the grouped ResNeXt convolutions much faster in it)."""
    model = model.eval().requires_grad_(False).to(device)
    return model.to(memory_format=torch.channels_last)
