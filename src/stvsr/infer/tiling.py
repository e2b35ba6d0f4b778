"""Spatial tiling with feathered blending, and automatic tile halving on out-of-memory.

A frame too large for memory is cut into overlapping ``tile × tile`` LR tiles (the last tile of a
row/column is shifted to end at the border, so every tile has the full size). Each tile's output
is weighted by a separable window that is 1 inside and, on every side that borders another tile
(never on the frame border), is 0 for the outermost ``margin`` LR pixels and then ramps linearly
to 1 at ``overlap - margin``; outputs are accumulated and divided by the summed weights. Two
opposite ramps over an overlap of exactly ``overlap`` pixels sum to 1 (a partition of unity).

Blending hides seams but does not give a tile context beyond its borders: a pixel matches the
untiled result only if the network's receptive field around it lies inside the tile. EDVR's
theoretical receptive field (PCD pyramid, TSA pooling pyramid, 2 × 15 residual blocks) is far
larger than practical overlaps, so tiled EDVR is close to, not equal to, untiled EDVR. Measured
for EDVR-M with its default random init (5 × 3 × 64 × 64 input, cut at 32): the error of a tile
pixel is 0.31 at the cut, 2e-4 at 2 LR pixels from it, 5e-5 at 4, 1.5e-5 at 8, 1e-6 at 12 and
float noise from 16 on. Hence the zero-weight ``margin`` (default ``overlap // 4``): with tile 24,
overlap 8 on 40 × 56 the tiled output differs from the untiled one by ≤ 5e-5 (7.6e-3 without the
margin). Trained weights may reach farther; use ``overlap`` ≥ 16 LR pixels for real video.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from stvsr.errors import StvsrError

_OOM_CANDIDATES = (
    getattr(torch, "OutOfMemoryError", None),
    getattr(torch.cuda, "OutOfMemoryError", None),
)
_OOM_TYPES: tuple[type[BaseException], ...] = tuple(t for t in _OOM_CANDIDATES if t is not None)


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error (CUDA/MPS/CPU allocator)."""
    if _OOM_TYPES and isinstance(exc, _OOM_TYPES):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of ``tile``-sized tiles covering ``[0, length)``, overlapping by ≥ ``overlap``."""
    if tile >= length:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _ramp(n: int, scale: int, overlap: int, margin: int, low: bool, high: bool) -> Tensor:
    """1-D weights for ``n`` HR samples of a tile (see the module docstring).

    At LR distance ``d`` from a tile side that borders another tile the weight is
    ``clamp((d - margin) / (overlap - 2 * margin), 0, 1)``: zero in the outermost ``margin``
    pixels, then a linear ramp; opposite ramps of two tiles overlapping by ``overlap`` sum to 1.
    """
    d = (torch.arange(n, dtype=torch.float64) + 0.5) / scale
    span = max(overlap - 2 * margin, 1e-6)
    w = torch.ones(n, dtype=torch.float64)
    if low:
        w = torch.minimum(w, ((d - margin) / span).clamp(0, 1))
    if high:
        w = torch.minimum(w, ((d.flip(0) - margin) / span).clamp(0, 1))
    return w.float()


def _round_tile(tile: int, multiple: int) -> int:
    return max(multiple, (tile // multiple) * multiple)


def _run_tiles(
    fn: Callable[[Tensor], Tensor], x: Tensor, scale: int, tile: int, overlap: int,
    margin: int | None,
) -> Tensor:
    h, w = x.shape[-2:]
    th, tw = min(tile, h), min(tile, w)
    ov = min(overlap, tile // 2)
    mg = ov // 4 if margin is None else min(int(margin), ov // 2)
    ys, xs = tile_starts(h, th, ov), tile_starts(w, tw, ov)
    out: Tensor | None = None
    wsum: Tensor | None = None
    for y0 in ys:
        for x0 in xs:
            o = fn(x[..., y0 : y0 + th, x0 : x0 + tw])
            if o.shape[-2:] != (th * scale, tw * scale):
                raise StvsrError(
                    f"tile output {tuple(o.shape[-2:])} is not scale={scale} times the tile "
                    f"({th}x{tw}); pass the model's scale"
                )
            if out is None:
                shape = (*o.shape[:-2], h * scale, w * scale)
                out = torch.zeros(shape, dtype=torch.float32, device=o.device)
                wsum = torch.zeros((h * scale, w * scale), dtype=torch.float32, device=o.device)
            wy = _ramp(th * scale, scale, ov, mg, y0 > 0, y0 + th < h)
            wx = _ramp(tw * scale, scale, ov, mg, x0 > 0, x0 + tw < w)
            wt = (wy[:, None] * wx[None, :]).to(o.device)
            ys_, xs_ = slice(y0 * scale, (y0 + th) * scale), slice(x0 * scale, (x0 + tw) * scale)
            out[..., ys_, xs_] += o.float() * wt
            assert wsum is not None
            wsum[ys_, xs_] += wt
            del o
    assert out is not None and wsum is not None
    return out / wsum.clamp_min(1e-12)


class TileSize:
    """The tile size shared by the :func:`tiled_forward` calls of one run (``None``: untiled).

    After an out-of-memory error :func:`tiled_forward` halves the tile and keeps the smaller size
    here, so later calls (the next chunks and segments of a video) start from it instead of
    failing again at the full size. Each halving is reported once: through ``log`` when given,
    else as a :class:`RuntimeWarning`.
    """

    def __init__(self, tile: int | None, log: Callable[[str], None] | None = None) -> None:
        self.tile = tile
        self.log = log
        self.halvings = 0

    def shrink(self, old: int, new: int) -> None:
        """Use ``new``-pixel tiles from now on (``old`` ran out of memory)."""
        self.tile = new
        self.halvings += 1
        msg = (f"out of memory with {old}-pixel tiles; using {new}-pixel tiles for the rest of "
               "the run")
        if self.log is not None:
            self.log(msg)
        else:
            warnings.warn(msg, RuntimeWarning, stacklevel=3)


def tiled_forward(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    scale: int,
    tile: int | TileSize | None,
    overlap: int = 16,
    multiple: int = 4,
    min_tile: int = 32,
    margin: int | None = None,
) -> Tensor:
    """Run ``fn`` on overlapping spatial tiles of ``x`` and blend the outputs without seams.

    Args:
        fn: ``(B, T, 3, th, tw) -> (B, 3, s·th, s·tw)`` (window models) or
            ``(B, T', 3, s·th, s·tw)`` (recurrent / space-time models).
        x: ``(B, T, 3, H, W)`` (any leading dims; tiling is over the last two).
        scale: spatial factor ``s`` of ``fn``.
        tile: LR tile size (rounded down to a multiple of ``multiple``); ``None`` runs untiled;
            a :class:`TileSize` shared by several calls remembers a tile halved after an
            out-of-memory error for the calls that follow.
        overlap: LR overlap between neighbouring tiles (capped at half the tile).
        multiple: tile sizes are multiples of this (the model's size rule; 16 for ``hr_in``).
        min_tile: smallest tile tried after out-of-memory errors.
        margin: LR pixels at each inner tile side that get zero weight (default
            ``overlap // 4``): the outermost pixels of a tile see zero padding instead of their
            neighbours and are the least accurate.

    Returns:
        ``(B, 3, s·H, s·W)`` or ``(B, T', 3, s·H, s·W)``, float32.

    On an out-of-memory error the tile is halved (each halving is reported once, see
    :class:`TileSize`) and the whole frame is redone, down to ``min_tile``; below that a
    :class:`StvsrError` is raised.
    """
    state = tile if isinstance(tile, TileSize) else TileSize(tile)
    h, w = x.shape[-2:]
    while True:
        cur = None if state.tile is None else _round_tile(int(state.tile), multiple)
        try:
            if cur is None or (cur >= h and cur >= w):
                return fn(x).float()
            return _run_tiles(fn, x, scale, cur, overlap, margin)
        except Exception as exc:
            if not is_oom(exc):
                raise
            start = max(h, w) if cur is None else min(cur, max(h, w))
            new = _round_tile(start // 2, multiple)
            if new < min_tile or new >= start:
                raise StvsrError(
                    f"out of memory even with {start}-pixel tiles; free memory, use a smaller "
                    "model or run on CPU"
                ) from None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            state.shrink(start, new)


__all__ = ["TileSize", "is_oom", "tile_starts", "tiled_forward"]
