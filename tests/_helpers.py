"""Helpers shared by several test modules."""

from __future__ import annotations

import torch


def randomize_params(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb every parameter (incl. zero-initialised DCN offset convs) reproducibly; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = 0.002 if "conv_offset" in name else 0.02
            p.add_(torch.randn(p.shape, generator=g) * std)
    return model.eval()
