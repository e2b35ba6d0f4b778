"""MATLAB-compatible bicubic resizing (``imresize(img, scale, 'bicubic')``).

The weights follow MATLAB's ``contributions`` routine exactly: cubic kernel with ``a = -0.5``,
kernel widened by ``1/scale`` when downscaling with antialiasing, output pixel ``x`` (1-based)
mapped to input coordinate ``u = x/scale + 0.5 * (1 - 1/scale)``, and symmetric (mirror)
padding at the borders (``aux = [1:n, n:-1:1]``). The two axes are resized one after the
other, the axis with the smaller scale first (rows first on a tie), as MATLAB does.

Weights are computed in float64 and applied as small dense ``(out, in)`` matrices with
``matmul``, in the input's dtype; nothing is rounded in between the passes.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import numpy as np
import torch

from stvsr.errors import StvsrError

__all__ = ["cubic", "imresize", "imresize_np", "resize_weights", "clear_cache"]

_CACHE_SIZE = 64
_cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
_cache_lock = threading.Lock()


def cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB's bicubic kernel (Keys, ``a = -0.5``) evaluated elementwise in float64."""
    ax = np.abs(np.asarray(x, dtype=np.float64))
    ax2 = ax * ax
    ax3 = ax2 * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1.0)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1.0) & (ax <= 2.0))
    return inner + outer


def resize_weights(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """Dense float64 ``(out_len, in_len)`` matrix of MATLAB's bicubic contributions.

    Row ``i`` holds the normalised weights of output pixel ``i``; mirrored (out-of-range)
    taps are folded onto the input pixels they read, so ``out = W @ in``.
    """
    kernel_width = 4.0
    if scale < 1.0 and antialias:
        kernel_width = kernel_width / scale

        def h(t: np.ndarray) -> np.ndarray:
            return scale * cubic(scale * t)
    else:
        h = cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)[:, None]
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    ind = left + np.arange(taps, dtype=np.float64)[None, :]  # 1-based input positions
    w = h(u - ind)
    w = w / w.sum(axis=1, keepdims=True)
    # symmetric padding: aux = [1..n, n..1], indexed cyclically (0-based result below)
    period = 2 * in_len
    m = np.mod(ind.astype(np.int64) - 1, period)
    idx = np.where(m < in_len, m, period - 1 - m)
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_len)[:, None], idx.shape)
    np.add.at(mat, (rows, idx), w)
    return mat


def _weights(
    in_len: int,
    out_len: int,
    scale: float,
    antialias: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Cached :func:`resize_weights` as a tensor on ``device`` with ``dtype``."""
    key = (in_len, out_len, float(scale), bool(antialias), str(device), dtype)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    mat = torch.from_numpy(resize_weights(in_len, out_len, scale, antialias))
    mat = mat.to(device=device, dtype=dtype)
    with _cache_lock:
        _cache[key] = mat
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return mat


def clear_cache() -> None:
    """Drop every cached weight matrix."""
    with _cache_lock:
        _cache.clear()


def _plan(
    h: int, w: int, scale: float | None, size: tuple[int, int] | None
) -> tuple[tuple[float, float], tuple[int, int]]:
    if (scale is None) == (size is None):
        raise StvsrError("imresize: give exactly one of `scale` or `size`")
    if scale is not None:
        if not scale > 0 or not math.isfinite(scale):
            raise StvsrError(f"imresize: scale must be a positive number, got {scale}")
        # MATLAB: output size = ceil(scale * input size); the given scale is used as is
        return (float(scale), float(scale)), (math.ceil(scale * h), math.ceil(scale * w))
    assert size is not None
    oh, ow = int(size[0]), int(size[1])
    if oh <= 0 or ow <= 0:
        raise StvsrError(f"imresize: size must be two positive integers, got {size}")
    return (oh / h, ow / w), (oh, ow)


def imresize(
    x: torch.Tensor,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> torch.Tensor:
    """MATLAB ``imresize(x, scale, 'bicubic')`` on the last two dims.

    Args:
        x: float tensor ``(..., H, W)`` (float32 or float64, any device); any value range.
        scale: factor for both axes (output ``ceil(scale * H) x ceil(scale * W)``), or
        size: output ``(h, w)``; the per-axis scales are then ``h / H`` and ``w / W``.
        antialias: widen the kernel by ``1/scale`` when downscaling (MATLAB's default).

    Returns:
        ``(..., h, w)`` tensor in ``x``'s dtype, not rounded or clamped.
    """
    if not torch.is_floating_point(x):
        raise StvsrError(f"imresize: expected a float tensor, got {x.dtype}; convert it first")
    if x.dim() < 2:
        raise StvsrError(f"imresize: expected a tensor (..., H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2], x.shape[-1]
    (sh, sw), (oh, ow) = _plan(h, w, scale, size)
    out = x
    # MATLAB sorts the scales (stable): the dimension with the smaller scale goes first.
    order = ("h", "w") if sh <= sw else ("w", "h")
    for dim in order:
        if dim == "h":
            mat = _weights(h, oh, sh, antialias, x.device, x.dtype)
            out = torch.matmul(mat, out)
        else:
            mat = _weights(w, ow, sw, antialias, x.device, x.dtype)
            out = torch.matmul(out, mat.t())
    return out


def imresize_np(
    img: np.ndarray,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> np.ndarray:
    """:func:`imresize` for a numpy image ``(H, W)`` or ``(H, W, C)``.

    Float inputs are resized in float64 and returned in their own dtype (any value range).
    uint8 inputs are resized in float64 (no rounding between the passes) and returned as uint8,
    rounded half up and clipped to [0, 255].
    """
    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise StvsrError(f"imresize_np: expected an (H, W) or (H, W, C) image, got {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
    if arr.ndim == 3:
        t = t.permute(2, 0, 1)
    out = imresize(t, scale, size=size, antialias=antialias)
    if arr.ndim == 3:
        out = out.permute(1, 2, 0)
    res = out.contiguous().numpy()
    if arr.dtype == np.uint8:
        return np.clip(np.floor(res + 0.5), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        return res.astype(arr.dtype, copy=False)
    return res
