"""Frame-rate conversion by any rational factor for ``stvsr upscale`` (temporal VSR).

A model that can make the frame at any time ``t ∈ (0, 1)`` between two frames (``rife``:
``interpolate(img0, img1, t)`` with ``scale = 1``) turns ``r`` fps into ``F·r`` fps for any
rational ``F >= 1`` (``5/2``: 24000/1001 → 60000/1001).

Times (all :class:`fractions.Fraction`, no float drift):

* The output is the uniform grid ``g_k = k / R`` (``R = F·r``, the output rate), ``k = 0 ..
  floor(T·R)``, from the first input time (0, as the engine counts) to the last one ``T``.
  Variable-frame-rate input gets the same uniform grid.
* An output time equal to an input time gives that input frame, unchanged. Between inputs ``i``
  and ``i + 1`` the output at ``g`` is ``interpolate(I_i, I_{i+1}, t)`` with the local fraction
  ``t = (g - t_i) / (t_{i+1} - t_i)``.
* Across a scene cut (``i + 1`` starts a new shot) nothing is blended: the output takes the
  nearest input frame (the earlier one on a tie).

:func:`retime_plan` lists the outputs of one segment; a segment owns the grid points in its
input frames' intervals, except that a nearest-frame copy across a cut belongs to the segment of
the frame it copies, so a segment only ever needs its own frames and the next one of its shot.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from fractions import Fraction

import torch
from torch import Tensor, nn

from stvsr.errors import StvsrError
from stvsr.infer.segments import Segment
from stvsr.infer.tiling import TileSize

__all__ = [
    "count_retimed",
    "local_fraction",
    "parse_rational",
    "retime_plan",
    "time_interpolator",
]

Interpolator = Callable[[Tensor, Tensor, Tensor], Tensor]


def parse_rational(value: object, what: str = "--fps-factor") -> Fraction:
    """``2``, ``2.5``, ``"5/2"``, ``"60000/1001"``, a :class:`Fraction` → an exact positive
    :class:`Fraction` (decimals are read as written: ``2.4`` is ``12/5``)."""
    if isinstance(value, Fraction):
        out = value
    elif isinstance(value, bool):
        raise StvsrError(f"{what} must be a number like 2, 2.5 or 5/2, got {value!r}")
    elif isinstance(value, int):
        out = Fraction(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise StvsrError(f"{what} must be a finite number, got {value!r}")
        out = Fraction(repr(value))
    elif isinstance(value, str):
        try:
            out = Fraction(value.replace(" ", ""))
        except (ValueError, ZeroDivisionError):
            raise StvsrError(
                f"{what} must be a number like 2, 2.5 or 5/2, got {value!r}"
            ) from None
    else:
        raise StvsrError(f"{what} must be a number like 2, 2.5 or 5/2, got {value!r}")
    if out <= 0:
        raise StvsrError(f"{what} must be positive, got {value}")
    return out


def time_interpolator(net: nn.Module) -> Callable[..., Tensor] | None:
    """``net.interpolate`` when ``net`` makes frames at any time between two frames of its own
    size (``interpolate(img0, img1, t)`` and ``scale == 1``); else ``None``."""
    fn = getattr(net, "interpolate", None)
    if fn is None or not callable(fn) or int(getattr(net, "scale", 0)) != 1:
        return None
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return None
    return fn if params[:3] == ["img0", "img1", "t"] else None


def count_retimed(last: Fraction, rate: Fraction) -> int:
    """Output frames on the grid ``k / rate`` from 0 to ``last`` (both included)."""
    return math.floor(last * rate) + 1


def local_fraction(times: list[Fraction], i: int, g: Fraction) -> Fraction:
    """``t`` of output time ``g`` between inputs ``i`` and ``i + 1``."""
    return (g - times[i]) / (times[i + 1] - times[i])


def _grid(a: Fraction, b: Fraction, rate: Fraction) -> range:
    """Grid indices ``k`` with ``a <= k / rate < b``."""
    return range(math.ceil(a * rate), math.ceil(b * rate))


def retime_plan(seg: Segment, times: list[Fraction], rate: Fraction
                ) -> list[tuple[str, int, Fraction]]:
    """The output frames of ``seg`` at ``rate`` as ``(what, i, time)``, in time order.

    ``times`` are the input times (starting at 0, strictly increasing). ``what`` is ``"frame"``
    (input ``i`` unchanged: the time is ``times[i]``, or the nearest-frame slot across a scene
    cut) or ``"interp"`` (the frame at ``time`` between inputs ``i`` and ``i + 1``, see
    :func:`local_fraction`).
    """
    n = len(times)
    out: list[tuple[str, int, Fraction]] = []
    s = seg.start
    if s == seg.shot_start and s > 0:  # slots after the cut's midpoint show this shot's 1st frame
        gap = times[s] - times[s - 1]
        for k in _grid(times[s - 1], times[s], rate):
            g = Fraction(k) / rate
            if 2 * (g - times[s - 1]) > gap:
                out.append(("frame", s, g))
    for i in range(seg.start, seg.end):
        if i + 1 == n:
            if (times[i] * rate).denominator == 1:
                out.append(("frame", i, times[i]))
            continue
        gap = times[i + 1] - times[i]
        cut = i + 1 == seg.shot_end
        for k in _grid(times[i], times[i + 1], rate):
            g = Fraction(k) / rate
            if g == times[i]:
                out.append(("frame", i, g))
            elif not cut:
                out.append(("interp", i, g))
            elif 2 * (g - times[i]) <= gap:
                out.append(("frame", i, g))
    return out


def interpolate_batch(
    interp: Callable[..., Tensor],
    img0: list[Tensor],
    img1: list[Tensor],
    ts: list[Fraction],
    *,
    device: torch.device | str,
    precision: str,
    tile: int | TileSize | None,
    tile_overlap: int,
) -> Tensor:
    """``interp`` on a batch of frame pairs ``(3, h, w)`` at times ``ts``, in inference mode at
    ``precision``, tiled when ``tile`` is given and with tiles halved on out-of-memory
    (:func:`stvsr.infer.tiling.tiled_forward`; they stay halved for later batches when ``tile``
    is a shared :class:`~stvsr.infer.tiling.TileSize`). Returns ``(N, 3, h, w)`` float32 on
    the CPU."""
    from stvsr.infer.runner import precision_context
    from stvsr.infer.tiling import tiled_forward

    t = torch.tensor([float(x) for x in ts], dtype=torch.float32, device=device)
    x = torch.stack([torch.stack(img0), torch.stack(img1)], dim=1).to(device)  # (N, 2, 3, h, w)

    def fn(pair: Tensor) -> Tensor:
        with torch.inference_mode(), precision_context(precision, device):
            return interp(pair[:, 0], pair[:, 1], t).float()[:, None]

    out = tiled_forward(fn, x, scale=1, tile=tile, overlap=tile_overlap)
    return out[:, 0].cpu()
