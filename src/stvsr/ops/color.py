"""BT.601 colour conversion as MATLAB's ``rgb2ycbcr`` / ``ycbcr2rgb``.

``Y = 16 + 65.481 R + 128.553 G + 24.966 B``, ``Cb = 128 - 37.797 R - 74.203 G + 112 B``,
``Cr = 128 + 112 R - 93.786 G - 18.214 B`` with R, G, B in [0, 1]; Y, Cb, Cr are on the
[0, 255] scale (Y in [16, 235], Cb/Cr in [16, 240]).

Two input conventions are accepted:

* torch float tensors ``(..., 3, H, W)`` with RGB in [0, 1] (channels third from last);
  results keep the tensor's dtype and device;
* numpy arrays ``(..., 3)`` (e.g. ``(H, W, 3)``), uint8 or float with RGB in [0, 255]
  (channels last); results are float64.

Nothing is rounded: metrics use the unrounded Y computed from the 8-bit frames.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from stvsr.errors import StvsrError

__all__ = ["RGB2YCBCR", "YCBCR_OFFSET", "rgb_to_y", "rgb_to_ycbcr", "ycbcr_to_rgb"]

#: rows give Y, Cb, Cr from R, G, B in [0, 1] (output on the [0, 255] scale, before offset)
RGB2YCBCR = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ],
    dtype=np.float64,
)
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)
_YCBCR2RGB = np.linalg.inv(RGB2YCBCR)

Array = TypeVar("Array", torch.Tensor, np.ndarray)


def _check_torch(x: torch.Tensor, name: str) -> None:
    if not torch.is_floating_point(x):
        raise StvsrError(f"{name}: expected a float tensor in [0, 1], got {x.dtype}")
    if x.dim() < 3 or x.shape[-3] != 3:
        raise StvsrError(f"{name}: expected a tensor (..., 3, H, W), got {tuple(x.shape)}")


def _check_numpy(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim < 1 or arr.shape[-1] != 3:
        raise StvsrError(f"{name}: expected an array (..., 3) with channels last, got {arr.shape}")
    return arr.astype(np.float64)


def _apply_torch(
    x: torch.Tensor, mat: np.ndarray, pre: np.ndarray, post: np.ndarray
) -> torch.Tensor:
    """``out = mat @ (x - pre) + post`` along channel dim -3."""
    m = torch.as_tensor(mat, dtype=x.dtype, device=x.device)
    pre_t = torch.as_tensor(pre, dtype=x.dtype, device=x.device).view(3, 1, 1)
    post_t = torch.as_tensor(post, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return torch.einsum("ij,...jhw->...ihw", m, x - pre_t) + post_t


def rgb_to_y(x: Array) -> Array:
    """Luma Y (MATLAB ``rgb2ycbcr``) on the [0, 255] scale.

    torch ``(..., 3, H, W)`` in [0, 1] -> ``(..., H, W)`` same dtype;
    numpy ``(..., 3)`` in [0, 255] -> ``(...)`` float64.
    """
    w = RGB2YCBCR[0]
    if isinstance(x, torch.Tensor):
        _check_torch(x, "rgb_to_y")
        return 16.0 + (w[0] * x[..., 0, :, :] + w[1] * x[..., 1, :, :] + w[2] * x[..., 2, :, :])
    arr = _check_numpy(x, "rgb_to_y") / 255.0
    return 16.0 + (w[0] * arr[..., 0] + w[1] * arr[..., 1] + w[2] * arr[..., 2])


def rgb_to_ycbcr(x: Array) -> Array:
    """RGB -> YCbCr (MATLAB ``rgb2ycbcr``); Y, Cb, Cr on the [0, 255] scale, not rounded.

    torch ``(..., 3, H, W)`` in [0, 1] -> ``(..., 3, H, W)``;
    numpy ``(..., 3)`` in [0, 255] -> ``(..., 3)`` float64.
    """
    zero = np.zeros(3)
    if isinstance(x, torch.Tensor):
        _check_torch(x, "rgb_to_ycbcr")
        return _apply_torch(x, RGB2YCBCR, zero, YCBCR_OFFSET)
    arr = _check_numpy(x, "rgb_to_ycbcr") / 255.0
    return arr @ RGB2YCBCR.T + YCBCR_OFFSET


def ycbcr_to_rgb(x: Array) -> Array:
    """YCbCr on the [0, 255] scale -> RGB (MATLAB ``ycbcr2rgb``), the inverse of
    :func:`rgb_to_ycbcr`; not clamped or rounded.

    torch ``(..., 3, H, W)`` -> RGB in [0, 1] (same dtype);
    numpy ``(..., 3)`` -> RGB float64 on the [0, 255] scale.
    """
    zero = np.zeros(3)
    if isinstance(x, torch.Tensor):
        if not torch.is_floating_point(x) or x.dim() < 3 or x.shape[-3] != 3:
            raise StvsrError(
                f"ycbcr_to_rgb: expected a float tensor (..., 3, H, W), got {x.dtype} "
                f"{tuple(x.shape)}"
            )
        return _apply_torch(x, _YCBCR2RGB, YCBCR_OFFSET, zero)
    arr = _check_numpy(x, "ycbcr_to_rgb")
    return ((arr - YCBCR_OFFSET) @ _YCBCR2RGB.T) * 255.0
