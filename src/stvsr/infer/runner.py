"""Run any registered model over a stream of frames in bounded memory.

:func:`restore_stream` is the one loop behind ``stvsr upscale``, ``stvsr eval`` (S-VSR and both
ST-VSR protocols) and the trainer's validation. It takes LR frames one at a time and yields
restored frames one at a time, in order, dispatching on the model's ``kind``; the output layout
and the context each kind needs come from :mod:`stvsr.infer.layout`, the default chunk sizes
from :data:`stvsr.infer.defaults.CHUNKING`:

* ``recurrent`` (BasicVSR, bicubic): the stream is cut into chunks of ``chunk`` frames, each run
  with ``overlap`` extra context frames on both sides whose outputs are discarded. A clip no longer
  than ``chunk`` is processed whole, exactly as published numbers are computed.
* ``window`` (EDVR): :class:`stvsr.infer.sliding.SlidingWindowRunner` (mirrored ends, per-frame
  features cached across windows).
* ``spacetime`` (SFNet and baselines): chunks of input frames with context as above; ``n`` inputs
  give ``2n - 1`` outputs, in-between frames included.

Only ``chunk + 2·overlap`` input frames are held at once, so memory does not grow with length.
The model runs through :func:`stvsr.infer.optimize` (fast kernels and autocast at the requested
precision), applied here once per stream; the model itself is not changed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from stvsr.errors import StvsrError
from stvsr.infer.defaults import chunking
from stvsr.infer.layout import StreamLayout, layout_of
from stvsr.infer.optimize import PRECISIONS, optimize, precision_context
from stvsr.infer.tiling import TileSize, tiled_forward

__all__ = ["PRECISIONS", "make_forward", "precision_context", "restore_stream"]


def make_forward(
    model: nn.Module,
    *,
    precision: str = "fp32",
    device: torch.device | str = "cpu",
    tile: int | TileSize | None = None,
    tile_overlap: int = 16,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn(x)`` = the model's forward in inference mode, optionally tiled, at ``precision``,
    through :func:`stvsr.infer.optimize` (fast kernels; the model itself is not changed).

    ``x`` is ``(1, T, 3, h, w)`` on ``device``; the result is float32. With a tile, every call
    of ``fn`` shares one :class:`~stvsr.infer.tiling.TileSize` (``tile`` itself when it is one):
    a tile halved after an out-of-memory error stays halved for the calls that follow.
    """
    net = optimize(model, device, precision)

    def call(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return net(x).float()

    if not _tiled(tile):
        return call
    state = tile if isinstance(tile, TileSize) else TileSize(tile)

    def tiled(x: torch.Tensor) -> torch.Tensor:
        return tiled_forward(call, x, scale=model.scale, tile=state, overlap=tile_overlap)

    return tiled


def _tiled(tile: int | TileSize | None) -> bool:
    return bool(tile.tile if isinstance(tile, TileSize) else tile)


def restore_stream(
    model: nn.Module,
    frames: Iterable[torch.Tensor],
    *,
    device: torch.device | str = "cpu",
    chunk: int | None = None,
    overlap: int | None = None,
    precision: str = "fp32",
    tile: int | TileSize | None = None,
    tile_overlap: int = 16,
) -> Iterator[torch.Tensor]:
    """Restore a stream of LR frames ``(3, h, w)`` in [0, 1]; yield outputs ``(3, s·h, s·w)``.

    Outputs are float32 on the CPU, not clamped, laid out as :func:`stvsr.infer.layout
    .layout_of` says (for ``spacetime`` models ``2n - 1`` outputs for ``n`` inputs, output ``2i``
    restores input ``i``). ``chunk`` / ``overlap``: ``None`` takes the model kind's default
    (:data:`stvsr.infer.defaults.CHUNKING`). ``tile``: LR tile
    size, or a :class:`~stvsr.infer.tiling.TileSize` shared with other streams of the same run
    (a tile halved after an out-of-memory error then stays halved across them).
    """
    chunk, overlap = chunking(getattr(model, "kind", ""), chunk, overlap)
    if chunk < 1 or overlap < 0:
        raise StvsrError("--chunk must be >= 1 and --overlap >= 0")
    device = torch.device(device)
    net = optimize(model, device, precision)  # the engine's one optimisation step
    fn = make_forward(net, precision=precision, device=device, tile=tile,
                      tile_overlap=tile_overlap)
    kind = model.kind
    if kind == "window":
        yield from _windowed(net, fn, frames, device, tiled=_tiled(tile))
        return
    if kind not in ("recurrent", "spacetime"):
        raise StvsrError(f"model kind {kind!r} cannot be run on a video")
    yield from _chunked(fn, frames, device, chunk, overlap, layout=layout_of(model))


class _WindowAdapter(nn.Module):
    """A window model whose forward is ``fn`` (tiling / autocast), for the naive window path."""

    kind = "window"

    def __init__(self, model: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.inner = model
        self.fn = fn
        self.scale, self.num_frames = model.scale, model.num_frames
        if hasattr(model, "center_frame_idx"):
            self.center_frame_idx = model.center_frame_idx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _windowed(
    model: nn.Module,
    fn: Callable[[torch.Tensor], torch.Tensor],
    frames: Iterable[torch.Tensor],
    device: torch.device,
    *,
    tiled: bool,
) -> Iterator[torch.Tensor]:
    """Sliding windows over the optimized ``model``: its per-frame feature cache when it has
    stages and no tiling is asked for, else one ``fn`` call (tiled) per window."""
    from stvsr.infer.sliding import SlidingWindowRunner

    if not tiled:
        runner = SlidingWindowRunner(model, device=device)
    else:
        runner = SlidingWindowRunner(_WindowAdapter(model, fn), device=device)
    for out in runner.run(frames):
        yield out.float().cpu()


def _chunked(
    fn: Callable[[torch.Tensor], torch.Tensor],
    frames: Iterable[torch.Tensor],
    device: torch.device,
    chunk: int,
    overlap: int,
    *,
    layout: StreamLayout,
) -> Iterator[torch.Tensor]:
    """Chunks of ``chunk`` core input frames with context frames on each side
    (``layout.context(overlap)``); each chunk yields the outputs it owns (``layout.owned``)."""
    buf: deque[torch.Tensor] = deque()  # input frames buf_start, buf_start + 1, ...
    buf_start = 0
    core = 0  # first input index whose output has not been yielded
    count = 0  # input frames received so far
    left, right = layout.context(overlap)

    def run(c0: int, c1: int, last: bool) -> Iterator[torch.Tensor]:
        lo = max(buf_start, c0 - left)
        hi = min(count, c1 + right)
        x = torch.stack(list(buf)[lo - buf_start: hi - buf_start]).unsqueeze(0).to(device)
        out = fn(x)[0].cpu()
        first = layout.output_of(lo)  # the chunk's outputs start at its first input's
        for j in layout.owned(c0, c1, last=last):
            yield out[j - first].clone()  # a view would pin the whole chunk's storage

    def drop() -> None:
        nonlocal buf_start
        while buf_start < core - left:
            buf.popleft()
            buf_start += 1

    for frame in frames:
        buf.append(frame)
        count += 1
        while count >= core + chunk + right:
            yield from run(core, core + chunk, last=False)
            core += chunk
            drop()
    if count == 0:
        raise StvsrError("the input has no frames")
    while core < count:
        c1 = min(count, core + chunk)
        yield from run(core, c1, last=c1 == count)
        core = c1
        drop()
