"""Frame <-> tensor conversion of the upscaler (one rounding rule: round half to even)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    pass






def frame_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8/uint16 array → ``(3, H, W)`` float32 in [0, 1]."""
    peak = 65535.0 if rgb.dtype == np.uint16 else 255.0
    t = torch.from_numpy(rgb.astype(np.float32) if rgb.dtype == np.uint16 else rgb)
    return t.permute(2, 0, 1).float().div_(peak)


def tensor_to_frame(x: torch.Tensor, high: bool = False) -> np.ndarray:
    """``(3, H, W)`` float → ``(H, W, 3)`` uint8 (or uint16 on 0-65535 when ``high``)."""
    peak = 65535.0 if high else 255.0
    y = x.detach().float().clamp(0, 1).mul(peak).round().permute(1, 2, 0).contiguous().numpy()
    return y.astype(np.uint16 if high else np.uint8)
