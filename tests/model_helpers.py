"""Helpers shared by the model tests."""

from __future__ import annotations

import torch


def randomize_zero_inits(model: torch.nn.Module, std: float = 0.05) -> None:
    """Zero-initialised convs make the network ignore its inputs at init; give them random weights."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and torch.all(m.weight == 0):
                m.weight.normal_(0, std)
