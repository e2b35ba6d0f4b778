"""The exponential moving average of the weights kept beside the trained model."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["make_ema", "update_ema"]


def make_ema(module: nn.Module) -> nn.Module:
    """A frozen eval-mode copy of ``module`` to average into."""
    ema = copy.deepcopy(module).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, module: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * module`` for trained parameters; frozen parameters
    and buffers are copied (the average of a constant is exactly that constant: no drift)."""
    for pe, p in zip(ema.parameters(), module.parameters()):
        if p.requires_grad:
            pe.mul_(decay).add_(p.detach(), alpha=1 - decay)
        else:
            pe.copy_(p.detach())
    for be, b in zip(ema.buffers(), module.buffers()):
        be.copy_(b)
