"""The torch device a config names (``run.device``, ``--device``): one rule for training runs and play."""

from __future__ import annotations

import torch


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"run.device={spec!r} but CUDA is not available on this machine")
    return device
