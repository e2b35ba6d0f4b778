"""Building blocks shared by the architectures (BasicSR-compatible parameter names)."""

from __future__ import annotations

import torch
from torch import nn

from stvsr.ops.fused import conv_act, fast_enabled, has_forward_hooks


def default_init(module: nn.Module, scale: float = 1.0) -> None:
    """Kaiming-normal init of every conv/linear in ``module``, weights scaled by ``scale``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            m.weight.data.mul_(scale)
            if m.bias is not None:
                m.bias.data.zero_()


class ResidualBlockNoBN(nn.Module):
    """``x + conv2(relu(conv1(x))) * res_scale`` with 3×3 convs and no normalisation.

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``. Parameter names ``conv1``/``conv2`` match BasicSR.
    """

    def __init__(self, num_feat: int = 64, res_scale: float = 1.0) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU()
        default_init(self, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


def run_res_blocks(blocks: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``blocks(x)``: ``(B, C, h, w) -> (B, C, h, w)``.

    On the fast path (:func:`stvsr.ops.fused.fast_enabled`) a chain of
    :class:`ResidualBlockNoBN` runs with fused conv + ReLU and conv + residual-add kernels (same
    maths: ``x + conv2(relu(conv1(x)))``); a block of another type, with ``res_scale != 1`` or
    with hooks runs as a module, and so does the whole chain when it has hooks.
    """
    if not fast_enabled() or has_forward_hooks(blocks):
        return blocks(x)
    for blk in blocks:
        if (type(blk) is ResidualBlockNoBN and blk.res_scale == 1.0
                and not has_forward_hooks(blk) and not has_forward_hooks(blk.relu)):
            x = conv_act(blk.conv2, conv_act(blk.conv1, x, blk.relu), add=x)
        else:
            x = blk(x)
    return x


def make_layer(block: type[nn.Module], num: int, **kwargs) -> nn.Sequential:
    """``num`` copies of ``block(**kwargs)`` in an ``nn.Sequential``."""
    return nn.Sequential(*[block(**kwargs) for _ in range(num)])


class ConvResidualBlocks(nn.Module):
    """conv3×3(in→C) + LeakyReLU(0.1) + ``num_block`` residual blocks (BasicVSR's trunk).

    Shapes: ``(B, in, H, W) -> (B, C, H, W)``; parameters live under ``main``.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 64, num_block: int = 15) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(num_in_ch, num_out_ch, 3, 1, 1, bias=True),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            make_layer(ResidualBlockNoBN, num_block, num_feat=num_out_ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)
