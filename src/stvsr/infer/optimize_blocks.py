"""Speed paths for the shared building blocks of :mod:`stvsr.models.blocks`, bound by
:func:`stvsr.infer.optimize` (see :mod:`stvsr.infer.overrides`).

* :func:`res_chain_forward` — a chain of :class:`~stvsr.models.blocks.ResidualBlockNoBN` run
  with fused conv + ReLU and conv + residual-add kernels (same maths:
  ``x + conv2(relu(conv1(x)))``);
* :func:`channels_last_input` / :func:`channels_last_cpu_input` — a method whose input goes
  channels-last first (on every device / on CPU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from stvsr.infer.overrides import Override, plain
from stvsr.models.blocks import ResidualBlockNoBN
from stvsr.ops.fused import conv_act, fast_enabled, fast_layout, has_forward_hooks

__all__ = [
    "channels_last_cpu_input",
    "channels_last_input",
    "fmt",
    "res_blocks",
    "res_chain",
    "res_chain_forward",
]


def fmt(x: Tensor) -> torch.memory_format:
    """``x``'s memory format (channels-last or contiguous), for keeping activations in it."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _fused_chain(blocks: nn.Sequential, x: Tensor) -> Tensor:
    """``blocks(x)`` block by block: ``(B, C, h, w) -> (B, C, h, w)``; a block of another type,
    with ``res_scale != 1`` or with hooks runs as a module."""
    for blk in blocks:
        if (type(blk) is ResidualBlockNoBN and blk.res_scale == 1.0
                and not has_forward_hooks(blk) and not has_forward_hooks(blk.relu)):
            x = conv_act(blk.conv2, conv_act(blk.conv1, x, blk.relu), add=x)
        else:
            x = blk(x)
    return x


def res_blocks(blocks: nn.Sequential, x: Tensor) -> Tensor:
    """``blocks(x)`` on the fast path with fused kernels, as a module call when ``blocks`` has
    hooks or the fast path is off: ``(B, C, h, w) -> (B, C, h, w)``."""
    if not fast_enabled() or has_forward_hooks(blocks):
        return blocks(x)
    return _fused_chain(blocks, x)


def res_chain_forward(blocks: nn.Sequential, x: Tensor) -> Tensor:
    """Override of a residual chain's ``forward`` (its hooks have run): fused on the fast path
    unless the chain has hooks, ``nn.Sequential.forward`` otherwise."""
    if not fast_enabled() or has_forward_hooks(blocks):
        return plain(blocks, "forward")(x)
    return _fused_chain(blocks, x)


def res_chain(blocks: nn.Sequential) -> Override:
    """The :func:`res_chain_forward` override of ``blocks``."""
    return Override(blocks, "forward", res_chain_forward)


def channels_last_input(method: str) -> Callable[[nn.Module, Tensor], Any]:
    """An override of ``module.<method>(x)`` that, on the fast path, turns ``x (N, C, H, W)``
    channels-last (:func:`~stvsr.ops.fused.fast_layout`) before the module's own method."""

    def call(module: nn.Module, x: Tensor) -> Any:
        return plain(module, method)(fast_layout(x))

    call.__name__ = call.__qualname__ = f"{method}_channels_last_input"
    return call


def channels_last_cpu_input(module: nn.Module, x: Tensor) -> Any:
    """Override of ``module.forward(x)``: as :func:`channels_last_input` for a CPU ``x``."""
    return plain(module, "forward")(fast_layout(x) if x.device.type == "cpu" else x)
