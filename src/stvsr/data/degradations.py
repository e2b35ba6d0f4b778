"""Synthetic degradations that make LR frames from HR frames (see spec/evaluation.md).

All functions take float tensors ``(..., 3, H, W)`` (any leading dims) with values in [0, 1]
and return float tensors of the same dtype whose values lie on the 8-bit grid ``k / 255``
(MATLAB's ``uint8`` rounding: half up; ``bd-duf`` truncates). Filtering is done in float64.

``bi``
    MATLAB ``imresize(hr, 1/s, 'bicubic')`` of the modcropped frame.
``bd``
    The BD behind BasicVSR's (and most papers') published numbers: MATLAB
    ``imfilter(hr, fspecial('gaussian', 12, 1.6), 'replicate')`` then keep pixels
    ``1, 5, 9, ...`` (0-based) for ``s = 4``. See :func:`bd_offset` for the general rule.
``bd-duf``
    The DUF paper's variant: 13x13 Gaussian, sigma 1.6, reflect padding (edge not repeated),
    keep pixels ``0, s, 2s, ...``; truncated (not rounded) to 8-bit, as the DUF files were.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from stvsr.errors import StvsrError
from stvsr.frames import frames_to_tensor, to_uint8
from stvsr.ops.resize import imresize

__all__ = [
    "DEGRADATIONS",
    "add_gaussian_noise",
    "bd_offset",
    "degrade",
    "degrade_bd",
    "degrade_bd_duf",
    "degrade_bi",
    "gaussian_kernel1d",
    "jpeg_compress",
    "modcrop",
    "quantize",
]


def modcrop(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop ``(..., H, W)`` to ``(..., H - H % scale, W - W % scale)``, keeping the top-left."""
    if scale < 1:
        raise StvsrError(f"modcrop: scale must be a positive integer, got {scale}")
    h, w = x.shape[-2], x.shape[-1]
    return x[..., : h - h % scale, : w - w % scale]


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the nearest ``k / 255`` (half up, as MATLAB's ``uint8``).

    This simulates how the literature's LR inputs were made (MATLAB ``imresize`` then
    ``uint8``), in float64; it is not a frame conversion (those round half to even,
    :mod:`stvsr.frames`)."""
    return torch.floor(x.clamp(0.0, 1.0) * 255.0 + 0.5) / 255.0


def gaussian_kernel1d(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of ``size`` taps sampled at ``-(size-1)/2 ... (size-1)/2``.

    Its outer product with itself equals MATLAB ``fspecial('gaussian', size, sigma)`` (both are
    normalised to sum 1; fspecial's ``eps``-cut never triggers for the sizes used here).
    """
    if size < 1 or not sigma > 0:
        raise StvsrError(f"gaussian kernel: need size >= 1 and sigma > 0, got {size}, {sigma}")
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(t * t) / (2.0 * sigma * sigma))
    return g / g.sum()


def bd_offset(scale: int, kernel_size: int) -> int:
    """First kept pixel (0-based) when subsampling a Gaussian-filtered frame by ``scale``.

    MATLAB ``imfilter`` anchors a kernel of ``n`` taps at 0-based tap ``a = (n - 1) // 2``, so
    filtered pixel ``i`` is centred at ``i + c`` with ``c = (n - 1) / 2 - a`` (0.5 for even
    ``n``, 0 for odd). LR pixel ``j`` stands for the HR block ``s*j ... s*j + s - 1`` whose
    centre is ``s*j + (s - 1) / 2``. We keep the filtered pixel whose centre is nearest to it,
    a tie going to the larger index (MATLAB's round-half-up):
    ``offset = floor((s - 1) / 2 - c + 1/2) = floor(s / 2 - c)``.

    For the 12-tap BD kernel: ``s = 4 -> 1`` (pixels 1, 5, 9, ...; this reproduces the
    published BasicVSR BD numbers), ``s = 2 -> 0``, ``s = 3 -> 1``. Only ``s = 4`` is checked
    against published data; for odd ``s`` an even kernel cannot be centred exactly.
    """
    centre_shift = (kernel_size - 1) / 2.0 - (kernel_size - 1) // 2
    return int(math.floor(scale / 2.0 - centre_shift))


def _check_frames(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise StvsrError(f"{name}: expected a float tensor (..., 3, H, W) in [0, 1]")
    if x.dim() < 3:
        raise StvsrError(f"{name}: expected a tensor (..., 3, H, W), got {tuple(x.shape)}")


def _strided_corr(
    x: torch.Tensor, kernel: np.ndarray, offset: int, scale: int, n_out: int, dim: int
) -> torch.Tensor:
    """``out[j] = sum_k kernel[k] * x[offset + scale * j + k]`` along ``dim`` (padded input)."""
    out: torch.Tensor | None = None
    for k, wk in enumerate(kernel.tolist()):
        start = offset + k
        term = x.narrow(dim, start, scale * (n_out - 1) + 1)
        term = term[(slice(None),) * (x.dim() + dim) + (slice(None, None, scale),)]
        out = term * wk if out is None else out.add_(term, alpha=wk)
    assert out is not None
    return out


def _blur_subsample(
    x: torch.Tensor,
    kernel: np.ndarray,
    pad_before: int,
    pad_after: int,
    mode: str,
    offset: int,
    scale: int,
) -> torch.Tensor:
    """Separable correlation with padding, keeping pixels ``offset + scale * j`` on both axes.

    ``x``: ``(..., H, W)``; computes ``out[i] = sum_k K[k] * in[i + k - pad_before]`` with the
    padded samples given by ``mode`` ("replicate" or "reflect"), in float64.
    """
    lead = x.shape[:-2]
    h, w = x.shape[-2], x.shape[-1]
    if mode == "reflect" and (max(pad_before, pad_after) >= min(h, w)):
        raise StvsrError(f"frame {h}x{w} is too small for this degradation's reflect padding")
    y = x.reshape(-1, 1, h, w).to(torch.float64)
    y = F.pad(y, (pad_before, pad_after, pad_before, pad_after), mode=mode)
    oh = len(range(offset, h, scale))
    ow = len(range(offset, w, scale))
    # strided shifted sums: cheap, exact float64, works on any device
    y = _strided_corr(y, kernel, offset, scale, oh, dim=-2)
    y = _strided_corr(y, kernel, offset, scale, ow, dim=-1)
    return y.reshape(*lead, oh, ow)


def degrade_bi(hr: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """BI: modcrop, MATLAB bicubic ``imresize(1/scale)`` in float64, round to 8-bit.

    ``(..., 3, H, W)`` -> ``(..., 3, H // scale, W // scale)``, same dtype.
    """
    _check_frames(hr, "degrade_bi")
    x = modcrop(hr, scale).to(torch.float64)
    return quantize(imresize(x, 1.0 / scale)).to(hr.dtype)


def degrade_bd(hr: torch.Tensor, scale: int = 4, sigma: float = 1.6) -> torch.Tensor:
    """BD (published-numbers variant): even ``2*ceil(3*sigma)+2``-tap Gaussian (12 for 1.6)
    with replicate padding, anchored as MATLAB ``imfilter`` (``out[i] = sum_k K[k] *
    in[i + k - 5]`` for 12 taps), then keep pixels ``bd_offset(scale, 12) + scale * j``
    (1, 5, 9, ... for ``scale = 4``); round to 8-bit.

    ``(..., 3, H, W)`` -> ``(..., 3, H // scale, W // scale)``, same dtype.
    """
    _check_frames(hr, "degrade_bd")
    size = 2 * math.ceil(3 * sigma) + 2
    kernel = gaussian_kernel1d(size, sigma)
    anchor = (size - 1) // 2
    x = modcrop(hr, scale)
    y = _blur_subsample(
        x, kernel, anchor, size - 1 - anchor, "replicate", bd_offset(scale, size), scale
    )
    return quantize(y).to(hr.dtype)


def degrade_bd_duf(
    hr: torch.Tensor, scale: int = 4, sigma: float = 1.6, *, truncate: bool = True
) -> torch.Tensor:
    """BD-DUF: 13x13 Gaussian (``sigma``), reflect padding, keep pixels ``0, s, 2s, ...``.

    The result is put on the 8-bit grid by truncation (``floor(255 v) / 255``) by default:
    that is how the DUF files ``Vid4/LR_BDx4_DUF`` were stored (interior of calendar, 9
    frames: mean |diff| 0.13 grey levels, 87 % of values exact; round-half-up gives 0.50 and
    50 %). ``truncate=False`` rounds half up like the other degradations.

    ``(..., 3, H, W)`` -> ``(..., 3, H // scale, W // scale)``, same dtype.
    """
    _check_frames(hr, "degrade_bd_duf")
    kernel = gaussian_kernel1d(13, sigma)
    x = modcrop(hr, scale)
    y = _blur_subsample(x, kernel, 6, 6, "reflect", 0, scale)
    if truncate:
        y = torch.floor(y.clamp(0.0, 1.0) * 255.0) / 255.0
    else:
        y = quantize(y)
    return y.to(hr.dtype)


DEGRADATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "bi": degrade_bi,
    "bd": degrade_bd,
    "bd-duf": degrade_bd_duf,
}


def degrade(hr: torch.Tensor, name: str, scale: int = 4) -> torch.Tensor:
    """Apply the degradation called ``name`` (a key of :data:`DEGRADATIONS`)."""
    fn = DEGRADATIONS.get(name)
    if fn is None:
        valid = ", ".join(sorted(DEGRADATIONS))
        raise StvsrError(f"unknown degradation {name!r}; choose one of: {valid}")
    return fn(hr, scale=scale)


def add_gaussian_noise(
    x: torch.Tensor, sigma: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add i.i.d. Gaussian noise of std ``sigma`` (on the [0, 1] scale) and clamp to [0, 1].

    ``x``: any shape; the noise is drawn on ``x``'s device with ``generator`` (if given).
    """
    if sigma < 0:
        raise StvsrError(f"noise sigma must be >= 0, got {sigma}")
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (x + sigma * noise).clamp(0.0, 1.0)


def jpeg_compress(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip with Pillow (4:2:0, baseline) at ``quality`` in 1..100.

    ``x``: ``(..., 3, H, W)`` float in [0, 1] (CPU or GPU); returns the decoded frames on
    the same device and dtype, values on the 8-bit grid.
    """
    from PIL import Image

    if not 1 <= int(quality) <= 100:
        raise StvsrError(f"JPEG quality must be in 1..100, got {quality}")
    _check_frames(x, "jpeg_compress")
    if x.shape[-3] != 3:
        raise StvsrError(f"jpeg_compress: expected 3 channels, got shape {tuple(x.shape)}")
    lead = x.shape[:-3]
    h, w = x.shape[-2], x.shape[-1]
    frames = to_uint8(x.reshape(-1, 3, h, w))  # the encoder's 8-bit input frames
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        buf = io.BytesIO()
        Image.fromarray(frame, "RGB").save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("RGB"))
    res = frames_to_tensor(out, torch.float64).reshape(*lead, 3, h, w)
    return res.to(device=x.device, dtype=x.dtype)
