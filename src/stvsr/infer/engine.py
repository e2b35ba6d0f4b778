"""``stvsr upscale``: resumable, streaming decode → model → encode for real video files.

:func:`upscale_video` is five named steps, each a function in its own module:

1. **Resolve the job** (:func:`stvsr.infer.job.resolve_job`): check the output, probe the input,
   build the model, fill in the options' defaults. ``--dry-run`` stops here and reports the plan
   and an estimate of time and memory (:func:`stvsr.infer.estimate.dry_run_report`).
2. **Scan** the input once (:func:`stvsr.infer.plan.scan_input`; cheap, no model): exact
   per-frame times (variable frame rate included) and the luma distance between consecutive
   frames, from which scene cuts follow (:mod:`stvsr.infer.scenes`). The scan never trusts the
   header's frame count; it is stored in the work folder's manifest, so a resumed run does not
   repeat it.
3. **Plan** segments of at most ``segment_frames`` input frames that never span a cut, and the
   output frames each one owns (:func:`stvsr.infer.plan.plan_run`).
4. **Restore** every unfinished segment (:func:`stvsr.infer.execute.restore_segments`): its
   input frames plus context frames on each side (clipped to the shot) are decoded as a stream,
   run through :func:`stvsr.infer.runner.restore_stream` with the model optimized once for the
   run (chunked / sliding window / space-time, optionally tiled with out-of-memory tile
   halving), the context outputs are dropped and the rest is encoded with the final codec into
   ``OUTPUT.stvsr-work/segNNNNNN.nut`` (or a PNG folder). Only a bounded number of frames is in
   memory at any time, whatever the video length.
5. **Join** the segments by remuxing their packets (no re-encode) into the output with exact
   timestamps, copying audio and subtitles in sync (:func:`stvsr.infer.output.join_segments`);
   the output appears atomically, then the work folder is removed.

Who restores which segment is a :class:`~stvsr.infer.scheduler.Scheduler`: this process alone
(:class:`~stvsr.infer.scheduler.LocalScheduler`) or one rank of many
(:class:`~stvsr.infer.distributed.DistributedScheduler`).

Time: output frames carry the input's own timestamps; a space-time model at ``fps_factor=2``
adds in-between frames at the exact midpoints, and the nominal rate is exactly twice the input's
rational rate. Across a scene cut the in-between frame repeats the previous frame.

Any rational ``fps_factor`` (``5/2``: 24000/1001 → 60000/1001) with a model that interpolates at
any time (``rife``; the default model when ``scale=1``): the output is the exact uniform grid
``k / (fps_factor · rate)``, input frames on the grid are copied unchanged, the others are
interpolated at their local time fraction, and nothing is blended across a scene cut (the nearest
frame is taken). Such a model always takes this path when the rate changes (also at ×2, and for
variable-frame-rate input, which then becomes constant-rate); see :mod:`stvsr.infer.retime`.

Colour: frames are read at their bit depth (10-bit → ``uint16``), converted with the input's own
YUV matrix and range, restored in float and written back at that bit depth when the codec allows
(x264 high10, x265, FFV1, 16-bit PNG) with the input's range/matrix/primaries/transfer tags.
Rotation: the display matrix is carried over to video outputs (frames stay unrotated, players
rotate them as they did the input); PNG frames are rotated so that they look upright.

Resume: the work folder's manifest names the input (path, size, mtime, probe), the model
(preset + weights SHA-256), the options (:class:`~stvsr.infer.options.UpscaleOptions`, resolved)
and the runtime (device, precision, deformable-conv implementation); re-running the same command
skips finished segments. Changed options start over; a changed runtime alone is refused with a
one-line error (the frames would differ).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from stvsr.frames import frame_to_tensor, tensor_to_frame
from stvsr.infer.defaults import CHUNKING
from stvsr.infer.estimate import dry_run_report
from stvsr.infer.execute import restore_segments
from stvsr.infer.job import UpscaleJob, resolve_job
from stvsr.infer.options import EncoderOptions, UpscaleOptions
from stvsr.infer.output import join_segments
from stvsr.infer.plan import RunPlan, announce, plan_run, scan_input
from stvsr.infer.progress import Progress
from stvsr.infer.scheduler import LocalScheduler, Scheduler
from stvsr.infer.segments import WorkDir

__all__ = ["CHUNKING", "EncoderOptions", "Progress", "UpscaleOptions", "frame_to_tensor",
           "tensor_to_frame", "upscale_video"]


def upscale_video(
    input: str | Path,
    output: str | Path,
    options: UpscaleOptions | None = None,
    *,
    model: str | nn.Module | None = None,
    weights: str | None = "default",
    device: str = "cpu",
    precision: str = "fp32",
    progress: str | bool = "bar",
    dry_run: bool = False,
    log: Callable[[str], None] | None = None,
    scheduler: Scheduler | None = None,
    on_segment_done: Callable[[int], None] | None = None,
    **option_kwargs: Any,
) -> dict[str, Any]:
    """Restore ``input`` (video file or image folder) into ``output`` (video file, or a folder of
    PNGs when it has no video extension). Returns a summary dict.

    ``options``: an :class:`~stvsr.infer.options.UpscaleOptions`; or give its fields (and the
    :class:`~stvsr.infer.options.EncoderOptions` fields ``codec``, ``crf``, ``preset``,
    ``pix_fmt``, ``lossless``) as keyword arguments. ``scale`` is the output scale factor
    (default: the model's; another value resizes the model output with MATLAB bicubic).
    ``fps_factor`` 2 (the default for space-time models) doubles the frame rate and needs a
    ``kind="spacetime"`` model; 1 keeps the input frames only; any other rational ``>= 1``
    (``2.5``, ``"5/2"``, a :class:`~fractions.Fraction`) needs a model that interpolates at any
    time (``rife``). ``output_fps`` (e.g. ``"60000/1001"``) instead sets the factor to
    ``output_fps / input rate``. ``self_ensemble``: average that many flipped / transposed
    (16: also time-reversed) runs of the model (:mod:`stvsr.infer.ensemble`).

    ``model``: a preset name or a built network; default ``"rife"`` (frame interpolation only)
    when ``scale == 1``, else chosen for the input (:func:`stvsr.infer.source.default_model`).
    ``progress``: ``"bar"``, ``"json"`` or ``"none"`` (``True``/``False`` = bar/none).
    ``dry_run`` prints and returns the plan and an estimate of time and memory, writing nothing.
    ``on_segment_done``: called with the number of segments this run has finished, after each
    one is saved; an exception it raises (e.g. ``KeyboardInterrupt``) ends the run as Ctrl-C
    does, keeping the finished segments for a resume.
    ``scheduler``: who restores which segment (default: this process alone); with a
    :class:`~stvsr.infer.distributed.DistributedScheduler` only rank 0 joins and returns the
    full summary. See the module docstring for the steps, resume and colour handling.
    """
    if options is None:
        options = UpscaleOptions.from_kwargs(**option_kwargs)
    elif option_kwargs:
        raise TypeError("give options or option keyword arguments, not both")
    say = log or (lambda s: print(s, file=sys.stderr))
    mode = "bar" if progress is True else "none" if progress is False else str(progress)
    job = resolve_job(input, output, options, model=model, weights=weights, device=device,
                      precision=precision, say=say)
    if dry_run:
        return dry_run_report(job, say)
    scheduler = scheduler or LocalScheduler()
    work = WorkDir(job.output)
    t_start = time.perf_counter()
    resumed, times, dists = scheduler.prepare(work, job.key(),
                                              lambda: scan_input(job, work, mode))
    plan = plan_run(job, times, dists)
    done = plan.done_frames(work, job.suffix)
    announce(plan, done, resumed, work, say)
    bar = Progress(mode, plan.n_out, initial=done)
    try:
        resumed_segments = restore_segments(job, plan, work, scheduler, bar, say=say,
                                            on_segment_done=on_segment_done)
        joins = scheduler.finish(work, [s.index for s in plan.segments], job.suffix, bar)
    finally:
        bar.close()
    if not joins:  # another rank joins
        return {"rank": scheduler.rank, "segments_encoded": len(scheduler.claimed)}
    seconds_model = time.perf_counter() - t_start
    written = join_segments(job, plan, work, mode)
    work.remove()
    seconds = time.perf_counter() - t_start
    return _summary(job, plan, written, resumed_segments, done, seconds, seconds_model)


def _summary(job: UpscaleJob, plan: RunPlan, written: int, resumed_segments: int, done: int,
             seconds: float, seconds_model: float) -> dict[str, Any]:
    """The summary dict of a finished run."""
    oh, ow = job.out_size
    return {
        "input": str(job.input), "output": str(job.output), "model": job.name,
        "kind": job.kind, "frames_in": plan.n_in, "frames_out": written, "width": ow,
        "height": oh, "fps": str(job.out_rate), "bits": job.bits, "codec": job.codec,
        "scene_cuts": plan.cuts, "segments": len(plan.segments),
        "resumed_segments": resumed_segments, "seconds": seconds,
        "seconds_model": seconds_model,
        "frames_per_second": (plan.n_out - done) / max(seconds, 1e-9),
    }
