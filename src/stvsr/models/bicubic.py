"""Bicubic ×s upscaling as a model: the baseline every S-VSR result is compared with."""

from __future__ import annotations

import torch
from torch import nn

from stvsr.registry import register_model


class Bicubic(nn.Module):
    """MATLAB-compatible bicubic ×``scale`` of every frame (no parameters).

    Shapes: ``(B, T, 3, h, w) -> (B, T, 3, s·h, s·w)``.
    """

    kind = "recurrent"
    num_frames = 0

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from stvsr.ops.resize import imresize

        return imresize(x, float(self.scale))


register_model("bicubic", Bicubic, scale=4, description="MATLAB bicubic x4 (baseline)")
