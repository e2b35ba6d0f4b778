"""Step 4 of ``stvsr upscale``: restore the segments.

:func:`restore_segments` walks the unfinished segments of a :class:`~stvsr.infer.plan.RunPlan`
(those its :class:`~stvsr.infer.scheduler.Scheduler` gives this process), decodes each one's
input frames plus context from a forward-only :class:`Feed`, runs the model once optimized for
the whole run (:func:`restore_segment`) or, when retiming by a rational factor, the model's
interpolator (:func:`retime_segment`), and encodes the segment's output frames into the work
folder, marking it done. Only a bounded number of frames is in memory at any time.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from stvsr.data.video import VideoReader, VideoWriter
from stvsr.errors import VideoError
from stvsr.frames import frame_to_tensor, tensor_to_frame
from stvsr.infer.checks import disk_error
from stvsr.infer.layout import layout_of
from stvsr.infer.optimize import optimize
from stvsr.infer.output import rotate
from stvsr.infer.passes import PassWatch
from stvsr.infer.progress import Progress
from stvsr.infer.retime import interpolate_batch, local_fraction
from stvsr.infer.runner import restore_stream
from stvsr.infer.segments import Segment, WorkDir
from stvsr.infer.tiling import TileSize

if TYPE_CHECKING:
    from stvsr.infer.job import UpscaleJob
    from stvsr.infer.plan import RunPlan
    from stvsr.infer.scheduler import Scheduler

__all__ = ["RETIME_BATCH", "Feed", "bound_malloc", "restore_segment", "restore_segments",
           "retime_segment"]

#: Frame pairs interpolated in one call when retiming by a rational factor.
RETIME_BATCH = 4


class Feed:
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


def restore_segment(
    net: nn.Module,
    seg: Segment,
    plan: list[tuple[str, int, Fraction]],
    feed: Feed,
    path: Path,
    *,
    job: UpscaleJob,
    keep_from: int,
    tile: TileSize,
    writer_kw: dict[str, Any],
    bar: Progress,
) -> None:
    """Restore segment ``seg`` (with ``job.context`` frames of context) with ``net`` (optimized
    once for the run) and encode its output frames ``plan`` to ``path``."""
    o = job.options
    assert o.chunk is not None and o.overlap is not None  # resolved by resolve_job
    device, precision, chunk, overlap = job.device, job.precision, o.chunk, o.overlap
    tile_overlap, resize, high = o.tile_overlap, job.resize_to, job.high
    rotation = job.frame_rotation
    lo, hi = seg.context(*job.context)
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
                rgb = rotate(tensor_to_frame(out, high), rotation)
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


def retime_segment(
    interp: Callable[..., torch.Tensor],
    seg: Segment,
    plan: list[tuple[str, int, Fraction]],
    times: list[Fraction],
    feed: Feed,
    path: Path,
    *,
    job: UpscaleJob,
    keep_from: int,
    tile: TileSize,
    writer_kw: dict[str, Any],
    bar: Progress,
) -> None:
    """Write the outputs of a :func:`~stvsr.infer.retime.retime_plan` of ``seg`` to ``path``:
    input frames copied, the others interpolated in batches of :data:`RETIME_BATCH` pairs.
    ``times`` are the input times the plan was made from. At most two input frames (plus the
    pairs of one batch) are held."""
    device, precision, tile_overlap = job.device, job.precision, job.options.tile_overlap
    resize, high, rotation = job.resize_to, job.high, job.frame_rotation
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
        writer.write(rotate(rgb, rotation), time=g)
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


def bound_malloc() -> Callable[[], None]:
    """On glibc, cap the number of malloc arenas (each encoder / decoder thread would otherwise
    keep its own heap of freed frame buffers, so peak RSS crept up with the number of segments)
    and return a function that gives freed heap memory back to the OS; a no-op elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        return lambda: libc.malloc_trim(0)
    except (OSError, AttributeError):
        return lambda: None


def restore_segments(
    job: UpscaleJob,
    plan: RunPlan,
    work: WorkDir,
    scheduler: Scheduler,
    bar: Progress,
    *,
    say: Callable[[str], None],
    on_segment_done: Callable[[int], None] | None = None,
) -> int:
    """Step 4: restore every unfinished segment ``scheduler`` gives this process, in order, and
    mark each one done in ``work``; returns how many were finished before this run.

    The model is optimized once for the run (:func:`stvsr.infer.optimize.optimize`); a tile
    halved after an out-of-memory error stays halved. ``on_segment_done`` is called with the
    number of segments this run has finished; an exception it raises (``KeyboardInterrupt``)
    ends the run as Ctrl-C does, keeping the finished segments for a resume."""
    pending = [s for s in plan.segments if not work.is_done(s.index, job.suffix)]
    trim = bound_malloc()
    net = None if job.retime else optimize(job.net, job.device, job.precision)
    tiles = TileSize(job.options.tile, log=say)
    writer_kw = job.writer_kwargs(plan.time_base)
    rel = plan.relative_times
    feed: Feed | None = None
    try:
        finished, last = 0, -2
        for k, seg in enumerate(pending):
            if not scheduler.claim(seg.index, bar):
                continue  # another rank has it
            if feed is None or k != last + 1:  # the first segment, or one after a gap: seek
                if feed is not None:
                    feed.close()
                lo0 = seg.context(*job.context)[0]
                feed = Feed(job.open_reader(start=plan.times[lo0]), lo0, plan.times)
            last = k
            nxt = pending[k + 1].context(*job.context)[0] if k + 1 < len(pending) else plan.n_in
            path = work.segment_path(seg.index, job.suffix)
            outputs = plan.outputs[seg.index]
            bar.status(f"segment {seg.index + 1}/{len(plan.segments)}: input frames "
                       f"{seg.start}-{seg.end - 1}")
            common: dict[str, Any] = dict(job=job, keep_from=nxt, tile=tiles,
                                          writer_kw=writer_kw, bar=bar)
            if net is None:
                assert job.interp is not None
                retime_segment(job.interp, seg, outputs, rel, feed, path, **common)
            else:
                with PassWatch(job.net, bar.detail):  # counts inside the model's passes
                    restore_segment(net, seg, outputs, feed, path, **common)
            work.mark_done(seg.index, len(outputs))
            trim()
            finished += 1
            if on_segment_done is not None:
                on_segment_done(finished)
    except KeyboardInterrupt:
        bar.close()
        say(f"interrupted: {work.path} keeps the finished segments; run the same command "
            "again to resume")
        raise
    except (OSError, VideoError) as exc:
        bar.close()
        raise disk_error(exc, work.path) from None
    finally:
        if feed is not None:
            feed.close()
    return len(plan.segments) - len(pending)
