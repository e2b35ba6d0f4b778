"""Optical-flow utilities: backward warping and flow resizing.

Convention used throughout :mod:`stvsr`: a flow field has shape ``(B, 2, H, W)``; channel 0 is
the horizontal (x, column) displacement and channel 1 the vertical (y, row) displacement, both in
pixels of the tensor they belong to. Warping is *backward*: ``flow_warp(x, flow)(p) = x(p +
flow(p))``, i.e. every output pixel fetches its value from the displaced position in ``x``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as F  # noqa: N812

__all__ = ["Midpoint", "flow_warp", "midpoint_motion", "resize_flow"]


def _grid_dtype(x: torch.Tensor, flow: torch.Tensor) -> torch.dtype:
    """float64 if either input is float64, else float32 (never half precision)."""
    return torch.float64 if torch.float64 in (x.dtype, flow.dtype) else torch.float32


def flow_warp(
    x: torch.Tensor,
    flow: torch.Tensor,
    *,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = True,
) -> torch.Tensor:
    """Backward-warp ``x`` with a per-pixel displacement field.

    ``out[b, :, i, j] = x[b, :, i + flow[b, 1, i, j], j + flow[b, 0, i, j]]``, sampled with
    ``mode`` (``"bilinear"``, ``"nearest"``, ``"bicubic"``); positions outside the image follow
    ``padding_mode`` (``"zeros"``, ``"border"``, ``"reflection"``).

    The sampling grid is built and normalised in float32 (float64 if an input is float64), and
    half-precision ``x`` (fp16/bf16) is sampled in float32 and cast back, so coordinates keep
    sub-pixel accuracy at any resolution. ``align_corners`` only selects the normalisation used
    for :func:`torch.nn.functional.grid_sample`; the pixel-space meaning of ``flow`` is the same
    for both values (integer flow values fetch exact pixel centres). ``True`` is what BasicSR's
    ``flow_warp`` (and hence BasicVSR) uses.

    Args:
        x: ``(B, C, H, W)`` tensor to warp.
        flow: ``(B, 2, H, W)`` displacement in pixels, channel 0 = x (horizontal),
            channel 1 = y (vertical).

    Returns:
        ``(B, C, H, W)`` warped tensor, same dtype as ``x``.
    """
    if x.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"flow_warp expects x (B, C, H, W) and flow (B, 2, H, W); got {tuple(x.shape)} "
            f"and {tuple(flow.shape)}"
        )
    b, _, h, w = x.shape
    if flow.shape[0] != b or flow.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"flow {tuple(flow.shape)} does not match x {tuple(x.shape)} in batch or size"
        )
    dtype = _grid_dtype(x, flow)
    f = flow.to(dtype)
    xs = torch.arange(w, device=flow.device, dtype=dtype).view(1, 1, w)
    ys = torch.arange(h, device=flow.device, dtype=dtype).view(1, h, 1)
    gx = xs + f[:, 0]
    gy = ys + f[:, 1]
    if align_corners and torch.jit.is_tracing():  # ONNX export: sizes stay symbolic
        gx = gx * (2.0 / (w - 1).clamp(min=1)) - 1.0
        gy = gy * (2.0 / (h - 1).clamp(min=1)) - 1.0
    elif align_corners:
        gx = gx * (2.0 / max(w - 1, 1)) - 1.0
        gy = gy * (2.0 / max(h - 1, 1)) - 1.0
    else:
        gx = (2.0 * gx + 1.0) / w - 1.0
        gy = (2.0 * gy + 1.0) / h - 1.0
    grid = torch.stack((gx, gy), dim=-1)  # (B, H, W, 2)
    src = x if x.dtype == dtype else x.to(dtype)
    out = F.grid_sample(src, grid, mode=mode, padding_mode=padding_mode,
                        align_corners=align_corners)
    return out if out.dtype == x.dtype else out.to(x.dtype)


def resize_flow(
    flow: torch.Tensor,
    size: tuple[int, int],
    *,
    mode: str = "bilinear",
    align_corners: bool = False,
) -> torch.Tensor:
    """Resize a flow field to ``size = (H', W')`` and rescale its values to the new pixel grid.

    Channel 0 is multiplied by ``W' / W`` and channel 1 by ``H' / H``.

    Args:
        flow: ``(B, 2, H, W)`` displacement in pixels.
        size: target ``(H', W')``.

    Returns:
        ``(B, 2, H', W')`` flow in pixels of the new size.
    """
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"resize_flow expects (B, 2, H, W); got {tuple(flow.shape)}")
    h, w = flow.shape[2:]
    kw = {"align_corners": align_corners} if mode in ("bilinear", "bicubic") else {}
    if torch.jit.is_tracing():  # ONNX export: sizes are traced values, keep them symbolic
        nh, nw = size
        out = F.interpolate(flow, size=(nh, nw), mode=mode, **kw)
        scale = torch.stack([torch.as_tensor(nw) / w, torch.as_tensor(nh) / h]).to(out.dtype)
        return out * scale.view(1, 2, 1, 1)
    nh, nw = int(size[0]), int(size[1])
    if (nh, nw) == (h, w):
        return flow
    out = F.interpolate(flow, size=(nh, nw), mode=mode, **kw)
    scale = torch.tensor([nw / w, nh / h], dtype=out.dtype, device=out.device)
    return out * scale.view(1, 2, 1, 1)


class Midpoint(NamedTuple):
    """Motion from the middle frame ``t = 1/2`` of a pair (see :func:`midpoint_motion`)."""

    ft0: torch.Tensor  # (B, 2, H, W) flow from t to frame 0
    ft1: torch.Tensor  # (B, 2, H, W) flow from t to frame 1
    e0t: torch.Tensor  # (B, 1, H, W) forward-backward inconsistency of frame 0, seen from t
    e1t: torch.Tensor  # (B, 1, H, W) same for frame 1
    w0: torch.Tensor  # (B, 1, H, W) blending weight of frame 0 (0 where unreliable)
    w1: torch.Tensor  # (B, 1, H, W) blending weight of frame 1


def midpoint_motion(f01: torch.Tensor, f10: torch.Tensor, sigma: float) -> Midpoint:
    """Linear-motion flows to ``t = 1/2`` and occlusion-aware blending weights for a frame pair.

    ``f01`` warps frame 1 onto frame 0 (``I0(p) ≈ I1(p + f01(p))``), ``f10`` the reverse, both
    ``(B, 2, H, W)`` in pixels. Super-SloMo's combination at ``t = 1/2``: ``ft0 = ¼(f10 - f01)``,
    ``ft1 = -ft0``. Forward–backward errors ``e0 = |f01 + warp(f10, f01)|`` (frame-0 grid) and
    ``e1`` likewise are warped to ``t``; ``w_j = v_j · exp(-(e_jt / sigma)²)`` where ``v_j`` is 1
    where the sample lies inside frame ``j``. ``sigma`` is in pixels of the flows.
    """
    ft0 = 0.25 * (f10 - f01)
    ft1 = -ft0
    e0 = (f01 + flow_warp(f10, f01, padding_mode="border")).norm(dim=1, keepdim=True)
    e1 = (f10 + flow_warp(f01, f10, padding_mode="border")).norm(dim=1, keepdim=True)
    e0t = flow_warp(e0, ft0, padding_mode="border")
    e1t = flow_warp(e1, ft1, padding_mode="border")
    ones = torch.ones_like(e0)
    w0 = flow_warp(ones, ft0, padding_mode="zeros") * torch.exp(-(e0t / sigma) ** 2)
    w1 = flow_warp(ones, ft1, padding_mode="zeros") * torch.exp(-(e1t / sigma) ** 2)
    return Midpoint(ft0, ft1, e0t, e1t, w0, w1)
