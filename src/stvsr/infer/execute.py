"""Execution of `stvsr upscale`: the frame feed and one segment's decode -> model -> encode
(space/space-time models, and retiming with an interpolator)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stvsr.data.video import (
    VideoReader,
    VideoWriter,
)
from stvsr.errors import VideoError
from stvsr.frames import frame_to_tensor, tensor_to_frame
from stvsr.infer.layout import layout_of
from stvsr.infer.plan import _rotate
from stvsr.infer.progress import Progress
from stvsr.infer.retime import (
    interpolate_batch,
    local_fraction,
)
from stvsr.infer.runner import restore_stream
from stvsr.infer.segments import (
    Segment,
)
from stvsr.infer.tiling import TileSize

#: Frame pairs interpolated in one call when retiming by a rational factor.
RETIME_BATCH = 4


# --------------------------------------------------------------------------------------------
# Input feed
# --------------------------------------------------------------------------------------------


class _Feed:
    """Forward-only frame source by input index, keeping a few frames for the next segment's
    left context (at most ``hi - keep_from`` frames)."""

    def __init__(self, reader: VideoReader, first: int, times: list[Fraction]) -> None:
        self.reader, self.times = reader, times
        self.iter = iter(reader)
        self.next = first
        self.cache: dict[int, np.ndarray] = {}
        self.tol = Fraction(1, 2) / reader.info.frame_rate if reader.info.frame_rate else (
            reader.info.time_base)

    def _read(self) -> None:
        try:
            frame = next(self.iter)
        except StopIteration:
            raise VideoError(
                f"{self.reader.path} ended at frame {self.next} but the scan found "
                f"{len(self.times)} frames; was the input changed during the run?"
            ) from None
        expected = self.times[self.next]
        if abs(frame.time - expected) > max(self.tol, Fraction(1, 1000)):
            raise VideoError(
                f"{self.reader.path}: frame {self.next} is at {float(frame.time):.4f} s, the scan "
                f"said {float(expected):.4f} s; delete the work folder and run again"
            )
        self.cache[self.next] = frame.rgb
        self.next += 1

    def frames(self, lo: int, hi: int, keep_from: int) -> Iterator[np.ndarray]:
        """Yield input frames ``lo .. hi-1``; afterwards only frames ``>= keep_from`` are kept."""
        for k in [k for k in self.cache if k < lo]:
            del self.cache[k]
        for i in range(lo, hi):
            while self.next <= i:
                self._read()
                if self.next - 1 < lo:  # frames of segments finished in an earlier run
                    del self.cache[self.next - 1]
            if i not in self.cache:
                raise VideoError(f"internal error: input frame {i} was dropped")  # pragma: no cover
            rgb = self.cache[i]
            if i < keep_from:
                del self.cache[i]
            yield rgb

    def close(self) -> None:
        self.reader.close()


def _run_segment(
    net: nn.Module,
    seg: Segment,
    plan: list[tuple[str, int, Fraction]],
    feed: _Feed,
    path: Path,
    *,
    keep_from: int,
    ctx: tuple[int, int],
    device: str,
    precision: str,
    chunk: int,
    overlap: int,
    tile: TileSize,
    tile_overlap: int,
    resize: tuple[int, int] | None,
    high: bool,
    rotation: int,
    writer_kw: dict[str, Any],
    bar: Progress,
) -> None:
    """Restore segment ``seg`` (with context) and encode its outputs to ``path``."""
    lo, hi = seg.context(*ctx)
    layout = layout_of(net)
    single = hi - lo == 1 and layout.chunked

    def inputs() -> Iterator[torch.Tensor]:
        for rgb in feed.frames(lo, hi, keep_from):
            x = frame_to_tensor(rgb)
            yield x
            if single:  # one-frame shot: run the model on (x, x) and keep output 0
                yield x

    stream = restore_stream(net, inputs(), device=device, chunk=chunk, overlap=overlap,
                            precision=precision, tile=tile, tile_overlap=tile_overlap)
    # map stream outputs to (what, input index)
    def labelled() -> Iterator[tuple[str, int, torch.Tensor]]:
        for j, out in enumerate(stream):
            if single:
                if j == 0:
                    yield "frame", lo, out
                continue
            what, i = layout.source(j)
            yield what, lo + i, out

    wanted = {(what, i): t for what, i, t in plan}
    writer = VideoWriter(path, **writer_kw)
    with warnings.catch_warnings():
        if path.suffix == "":
            warnings.filterwarnings("ignore", message="PNG frame output has no audio")
        with writer:
            for what, i, out in labelled():
                if (what, i) not in wanted and not (what == "frame" and ("dup", i) in wanted):
                    continue
                if resize is not None:
                    from stvsr.ops.resize import imresize

                    out = imresize(out.float(), size=resize)
                rgb = _rotate(tensor_to_frame(out, high), rotation)
                if (what, i) in wanted:
                    writer.write(rgb, time=wanted[(what, i)])
                    bar.update(1)
                if what == "frame" and ("dup", i) in wanted:
                    writer.write(rgb, time=wanted[("dup", i)])
                    bar.update(1)
                del out, rgb  # hold no output while the next chunk is computed
            if writer.frames_written != len(plan):
                raise VideoError(
                    f"segment {seg.index} produced {writer.frames_written} of {len(plan)} frames"
                )


def _run_retime_segment(
    interp: Callable[..., torch.Tensor],
    seg: Segment,
    plan: list[tuple[str, int, Fraction]],
    times: list[Fraction],
    feed: _Feed,
    path: Path,
    *,
    keep_from: int,
    device: str,
    precision: str,
    tile: TileSize,
    tile_overlap: int,
    resize: tuple[int, int] | None,
    high: bool,
    rotation: int,
    writer_kw: dict[str, Any],
    bar: Progress,
) -> None:
    """Write the outputs of a :func:`~stvsr.infer.retime.retime_plan` of ``seg`` to ``path``:
    input frames copied, the others interpolated in batches of :data:`RETIME_BATCH` pairs.
    ``times`` are the input times the plan was made from. At most two input frames (plus the
    pairs of one batch) are held."""
    lo, hi = seg.context(0, 1)
    source = feed.frames(lo, hi, keep_from)
    held: dict[int, tuple[np.ndarray, torch.Tensor | None]] = {}
    loaded = lo - 1

    def frame(i: int) -> tuple[np.ndarray, torch.Tensor | None]:
        nonlocal loaded
        while loaded < i:
            held[loaded + 1] = (next(source), None)
            loaded += 1
        return held[i]

    def tensor(i: int) -> torch.Tensor:
        rgb, x = frame(i)
        if x is None:
            x = frame_to_tensor(rgb)
            held[i] = (rgb, x)
        return x

    def emit(writer: VideoWriter, g: Fraction, *, rgb: np.ndarray | None = None,
             x: torch.Tensor | None = None) -> None:
        """Write input frame ``rgb`` (as it is when no resize or bit-depth change is asked
        for) or the float frame ``x``."""
        if rgb is None or resize is not None or (rgb.dtype == np.uint16) != high:
            if x is None:
                assert rgb is not None
                x = frame_to_tensor(rgb)
            if resize is not None:
                from stvsr.ops.resize import imresize

                x = imresize(x.float(), size=resize)
            rgb = tensor_to_frame(x, high)
        writer.write(_rotate(rgb, rotation), time=g)
        bar.update(1)

    writer = VideoWriter(path, **writer_kw)
    batch: list[tuple[int, Fraction]] = []

    def flush() -> None:
        if not batch:
            return
        mids = interpolate_batch(
            interp, [tensor(i) for i, _ in batch], [tensor(i + 1) for i, _ in batch],
            [local_fraction(times, i, g) for i, g in batch], device=device,
            precision=precision, tile=tile, tile_overlap=tile_overlap)
        for (_, g), mid in zip(batch, mids, strict=True):
            emit(writer, g, x=mid)
        batch.clear()

    with warnings.catch_warnings():
        if path.suffix == "":
            warnings.filterwarnings("ignore", message="PNG frame output has no audio")
        with writer:
            for what, i, g in plan:
                # the plan only moves forward: frames before the ones it needs can go
                for j in [j for j in held if j < i and all(j < b for b, _ in batch)]:
                    del held[j]
                if what == "frame":
                    flush()
                    emit(writer, g, rgb=frame(i)[0])
                else:
                    frame(i + 1)
                    batch.append((i, g))
                    if len(batch) >= RETIME_BATCH:
                        flush()
            flush()
            for _ in source:  # the rest of the decode range (keeps the feed's cache in step)
                pass
            if writer.frames_written != len(plan):
                raise VideoError(
                    f"segment {seg.index} produced {writer.frames_written} of {len(plan)} frames"
                )
