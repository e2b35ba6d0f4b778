"""Building blocks shared by the architectures (BasicSR-compatible parameter names)."""

from __future__ import annotations

import torch
from torch import nn


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
