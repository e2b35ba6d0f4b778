"""``stvsr upscale``: resumable, streaming decode → model → encode for real video files.

Pipeline (:func:`upscale_video`):

1. **Scan** the input once (cheap, no model): exact per-frame times (variable frame rate
   included) and the luma distance between consecutive frames; scene cuts follow from it
   (:mod:`stvsr.infer.scenes`). The scan never trusts the header's frame count. It is stored in
   the work folder's manifest, so a resumed run does not repeat it.
2. **Plan** segments of at most ``segment_frames`` input frames that never span a cut
   (:mod:`stvsr.infer.segments`).
3. **Restore** every unfinished segment: its input frames plus ``context`` frames on each side
   (clipped to the shot) are decoded as a stream, run through
   :func:`stvsr.infer.runner.restore_stream` (chunked / sliding window / space-time, optionally
   tiled with out-of-memory tile halving), the context outputs are dropped and the rest is encoded
   with the final codec into ``OUTPUT.stvsr-work/segNNNNNN.nut`` (or a PNG folder). Only a bounded
   number of frames is in memory at any time, whatever the video length.
4. **Join** the segments by remuxing their packets (no re-encode) into the output with exact
   timestamps, copying audio and subtitles in sync; the output appears atomically, then the work
   folder is removed.

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
(preset + weights SHA-256), the options and the runtime (device, precision, deformable-conv
implementation); re-running the same command skips finished segments. Changed options start
over; a changed runtime alone is refused with a one-line error (the frames would differ).
``on_segment_done`` lets a caller (or a test simulating Ctrl-C) act after each saved segment.
"""


from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from stvsr.data.video import (
    CODEC_ALIASES,
    VideoReader,
    concat_segments,
    count_frames,
)
from stvsr.errors import StvsrError, VideoError
from stvsr.infer.defaults import CHUNKING, chunking
from stvsr.infer.layout import layout_of
from stvsr.infer.retime import (
    count_retimed,
    parse_rational,
    retime_plan,
    time_interpolator,
)
from stvsr.infer.scenes import detect_cuts, frame_distance, luma_thumbnail
from stvsr.infer.segments import (
    WorkDir,
    input_fingerprint,
    output_plan,
    plan_segments,
)
from stvsr.infer.source import default_model
from stvsr.infer.tiling import TileSize

if TYPE_CHECKING:
    from stvsr.infer.distributed import Coordinator

from stvsr.frames import frame_to_tensor, tensor_to_frame
from stvsr.infer.execute import RETIME_BATCH, _Feed, _run_retime_segment, _run_segment
from stvsr.infer.plan import (
    _assemble_folder,
    _bound_malloc,
    _check_output,
    _disk_error,
    _estimate,
    _model_hash,
    _out_bits,
    _runtime_key,
    _time_base,
)
from stvsr.infer.progress import Progress

__all__ = ["CHUNKING", "Progress", "frame_to_tensor", "tensor_to_frame", "upscale_video"]

# Default chunking by model kind: stvsr.infer.defaults.CHUNKING (the table evaluation uses too).
#: Input frames per resumable segment (default: 4 chunks).
SEGMENT_CHUNKS = 4


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def upscale_video(
    input: str | Path,
    output: str | Path,
    *,
    model: str | nn.Module | None = None,
    weights: str | None = "default",
    device: str = "cpu",
    precision: str = "fp32",
    chunk: int | None = None,
    overlap: int | None = None,
    tile: int | None = None,
    tile_overlap: int = 16,
    scale: float | None = None,
    fps_factor: int | float | Fraction | str | None = None,
    output_fps: int | float | Fraction | str | None = None,
    codec: str = "libx264",
    crf: int = 18,
    preset: str = "medium",
    pix_fmt: str | None = None,
    lossless: bool = False,
    start: float | None = None,
    end: float | None = None,
    segment_frames: int | None = None,
    scene_detect: bool = True,
    scene_threshold: float = 0.12,
    fps_for_folders: float | Fraction = Fraction(25),
    progress: str | bool = "bar",
    dry_run: bool = False,
    log: Callable[[str], None] | None = None,
    coordinator: Coordinator | None = None,
    self_ensemble: int = 1,
    on_segment_done: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Restore ``input`` (video file or image folder) into ``output`` (video file, or a folder of
    PNGs when it has no video extension). Returns a summary dict.

    ``model``: a preset name or a built network; default ``"rife"`` (frame interpolation only)
    when ``scale == 1``, else ``"sfnet-s"``. ``scale`` is the output scale factor (default: the
    model's; another value resizes the model output with MATLAB bicubic). ``fps_factor`` 2 (the
    default for space-time models) doubles the frame rate and needs a ``kind="spacetime"`` model;
    1 keeps the input frames only; any other rational ``>= 1`` (``2.5``, ``"5/2"``, a
    :class:`Fraction`) needs a model that interpolates at any time (``rife``). ``output_fps``
    (e.g. ``"60000/1001"``) instead sets the factor to ``output_fps / input rate``.
    ``progress``: ``"bar"``, ``"json"`` or ``"none"`` (``True``/``False`` = bar/none).
    ``dry_run`` prints and returns the plan and an estimate of time and memory, writing nothing.
    ``self_ensemble``: average that many flipped / transposed (16: also time-reversed) runs of
    the model (:mod:`stvsr.infer.ensemble`; that many times slower).
    ``on_segment_done``: called with the number of segments this run has finished, after each
    one is saved; an exception it raises (e.g. ``KeyboardInterrupt``) ends the run as Ctrl-C
    does, keeping the finished segments for a resume.
    ``coordinator``: this process is one rank of many sharing the segments
    (:mod:`stvsr.infer.distributed`); only rank 0 joins and returns the full summary.
    See the module docstring for the pipeline, resume and colour handling.
    """
    from stvsr import create_model
    from stvsr.registry import is_untrained

    say = log or (lambda s: print(s, file=sys.stderr))
    if progress is True:
        progress = "bar"
    elif progress is False:
        progress = "none"
    in_path, out_path = Path(input), Path(output)
    mode = _check_output(out_path, in_path, codec)
    if fps_factor is not None and output_fps is not None:
        raise StvsrError("give --fps-factor or --output-fps, not both")
    factor = None if fps_factor is None else parse_rational(fps_factor, "--fps-factor")
    target = None if output_fps is None else parse_rational(output_fps, "--output-fps")
    reader = VideoReader(in_path, start=start, end=end, high_bit_depth=True,
                         fps_for_folders=fps_for_folders)
    info = reader.info
    if model is None:
        model, why = default_model(info, scale)
        say(f"model: {model} ({why}; --model overrides)")
    if isinstance(model, str):
        net = create_model(model, weights=weights, device=device)
    else:
        net = model.eval()
    name = getattr(net, "preset", type(net).__name__)
    if is_untrained(net):
        say(f"warning: {name} has no trained weights (random initialisation): the output only "
            "shows that the pipeline runs; pass --weights FILE for real results")
    kind = net.kind
    spacetime = kind == "spacetime"
    in_rate = info.frame_rate or Fraction(fps_for_folders)
    if target is not None:
        factor = target / in_rate
    if factor is None:
        factor = Fraction(2 if spacetime else 1)
    if factor < 1:
        raise StvsrError(
            f"the frame-rate factor must be >= 1 (frames are never dropped), got {factor}"
            + (f" = {target} / {in_rate} fps" if target is not None else "")
        )
    if factor != 1 and not spacetime:
        raise StvsrError(
            f"--fps-factor {factor} needs a space-time model (e.g. rife with --scale 1, "
            f"stvsr-bicubic, sfnet-s); {name} is a {kind} model that only upscales in space"
        )
    interp_fn = time_interpolator(net) if factor != 1 else None
    if factor not in (1, 2) and interp_fn is None:
        raise StvsrError(
            f"--fps-factor {factor} needs a model that interpolates at any time (rife, e.g. "
            f"--model rife --scale 1, or just --scale 1); {name} only makes frames halfway "
            "between its inputs (factor 2)"
        )
    retime = interp_fn is not None  # any rational factor on the exact output grid
    if self_ensemble > 1:
        if retime:
            raise StvsrError("--self-ensemble works with --fps-factor 1 or 2 only; drop it to "
                             f"retime by {factor}")
        from stvsr.infer.ensemble import self_ensemble as ensemble

        net = ensemble(net, self_ensemble)
        name = net.preset
    interpolate = spacetime and factor == 2 and not retime
    chunk, overlap = chunking(kind, chunk or None, overlap)
    if chunk < 1 or overlap < 0:
        raise StvsrError("--chunk must be >= 1 and --overlap >= 0")
    layout = layout_of(net)
    if retime:
        ctx_l, ctx_r = 0, 1  # a pair interpolator sees only the two frames around a slot
    else:
        ctx_l, ctx_r = layout.context(overlap)
    seg_len = segment_frames or max(SEGMENT_CHUNKS * chunk, 1)
    model_scale = int(net.scale)
    out_scale = float(scale) if scale else float(model_scale)
    if out_scale <= 0:
        raise StvsrError(f"--scale must be positive, got {scale}")
    oh = max(1, round(info.height * out_scale))
    ow = max(1, round(info.width * out_scale))
    resize = (oh, ow) != (info.height * model_scale, info.width * model_scale)
    high = _out_bits(info, pix_fmt)  # x264 high10 is chosen by VideoWriter
    rotation = info.rotation if info.rotation % 90 == 0 else 0
    if info.rotation % 90:
        warnings.warn(f"rotation {info.rotation}° is not a multiple of 90; ignored",
                      RuntimeWarning, stacklevel=2)
    out_rate = target if target is not None else in_rate * factor
    enc = CODEC_ALIASES[codec.lower()]

    if dry_run:
        reader.close()
        if start is None and end is None:
            n_in = count_frames(in_path)
        else:
            t0 = Fraction(start or 0)
            t1 = Fraction(end) if end is not None else (info.duration or t0)
            n_in = max(1, math.ceil((t1 - t0) * in_rate))
        if retime:
            n_out = count_retimed((n_in - 1) / in_rate, out_rate)
        else:
            n_out = layout.n_out(n_in) if interpolate else n_in
        from stvsr.ops.dcn import backend_summary

        dcn_line = backend_summary(net, device)
        est = _estimate(net, info, {"device": device, "precision": precision}, chunk, overlap,
                        (oh, ow), held=RETIME_BATCH + 2 if retime else None)
        secs = est["seconds_per_input_frame"] * n_in
        if retime:  # one pair interpolation per new frame (a forward of 3 frames makes 2)
            new = max(0, n_out - math.ceil(n_in / factor.denominator))
            secs = est["seconds_per_input_frame"] * 3 / 2 * new
        summary = {
            "dry_run": True, "input": str(in_path), "model": name, "kind": kind,
            "input_size": f"{info.width}x{info.height}", "input_fps": str(in_rate),
            "input_frames": n_in, "pix_fmt": info.pix_fmt, "bit_depth": info.bit_depth,
            "color": info.color, "rotation": info.rotation, "audio_streams": info.audio_streams,
            "output": str(out_path), "output_size": f"{ow}x{oh}", "output_fps": str(out_rate),
            "fps_factor": str(factor), "output_frames": n_out,
            "codec": "png" if mode == "folder" else enc,
            "bits": 16 if (high and mode == "folder") else (10 if high else 8),
            "estimated_seconds": secs, "estimated_memory_bytes": est["memory_bytes"],
            "dcn_backend": dcn_line,
            "estimate_method": "timed forward pass on a 64x64 crop scaled by pixel count; "
                               "memory = frames held x (input + 2x features + output) x 4 B",
        }
        say(f"input : {in_path} {info.width}x{info.height} {info.pix_fmt} ({info.bit_depth}-bit) "
            f"{float(in_rate):.3f} fps ({in_rate}), {n_in} frames, audio streams: "
            f"{info.audio_streams}, rotation {info.rotation}")
        say(f"model : {name} ({kind}, x{model_scale}) on {device} {precision}")
        if dcn_line:
            say(f"        {dcn_line}")
        say(f"output: {out_path} {ow}x{oh} {float(out_rate):.3f} fps ({out_rate}), {n_out} frames, "
            f"{summary['codec']} {summary['bits']}-bit")
        if retime:
            say(f"time  : x{factor} ({float(factor):g}): output frame k at exactly k x "
                f"{1 / out_rate} s, interpolated at its own time between the inputs around it; "
                "input frames on that grid copied unchanged")
        say(f"estimate: {secs:.1f} s (timed 64x64 crop, scaled by pixels), peak memory about "
            f"{est['memory_bytes'] / 2**30:.2f} GiB (frames held x feature channels)")
        return summary

    options = {
        "scale": out_scale, "codec": enc, "crf": crf,
        "fps_factor": int(factor) if factor.denominator == 1 else str(factor),
        "preset": preset, "pix_fmt": pix_fmt, "lossless": lossless, "tile": tile,
        "self_ensemble": self_ensemble,
        "tile_overlap": tile_overlap, "chunk": chunk,
        "overlap": overlap, "segment_frames": seg_len, "start": start, "end": end,
        "scene_detect": scene_detect, "scene_threshold": scene_threshold,
        "mode": mode, "fps_for_folders": str(fps_for_folders),
    }
    if retime:
        options["retime"] = str(out_rate)
    key = {"input": input_fingerprint(in_path, info),
           "model": {"name": name, "kind": kind, "scale": model_scale,
                     "weights": _model_hash(net)},
           "options": options,
           "runtime": _runtime_key(net, device, precision)}
    work = WorkDir(out_path)
    t_start = time.perf_counter()

    # ---- 1. scan -----------------------------------------------------------------------------
    def scan_input() -> tuple[list[Fraction], list[float]]:
        scan = work.load_scan()
        if scan is not None:
            return scan
        times: list[Fraction] = []
        dists: list[float] = []
        prev = None
        bar = Progress(progress if progress == "bar" else "none", info.num_frames or 0,
                       stage="scan")
        for frame in reader:
            thumb = luma_thumbnail(frame.rgb)
            dists.append(0.0 if prev is None else frame_distance(prev, thumb))
            prev = thumb
            times.append(frame.time)
            bar.update(1)
        bar.close()
        if not times:
            work.remove()
            raise VideoError(f"{in_path} has no frames in the selected range")
        work.save_scan(times, dists)
        return times, dists

    if coordinator is None:
        resumed = work.open(key, refuse="runtime")
        times, dists = scan_input()
    else:  # rank 0 opens the work folder and scans, every rank checks it sees the same
        resumed, times, dists = coordinator.prepare(work, key, scan_input)
    n_in = len(times)
    cuts = detect_cuts(dists, threshold=scene_threshold) if scene_detect else []
    segments = plan_segments(n_in, cuts, seg_len)
    rel = [t - times[0] for t in times]  # the output starts at 0 (also after --start)
    if retime:
        plans = [retime_plan(s, rel, out_rate) for s in segments]
    else:
        plans = [output_plan(s, rel, interpolate=interpolate) for s in segments]
    n_out = sum(len(p) for p in plans)
    out_times = [t for p in plans for (_, _, t) in p]
    tb = _time_base(out_times, out_rate) if mode == "video" else None
    seg_suffix = ".nut" if mode == "video" else ""
    done_frames = sum(len(p) for s, p in zip(segments, plans, strict=True)
                      if work.is_done(s.index, seg_suffix))
    if resumed and done_frames:
        say(f"resuming: {done_frames} of {n_out} output frames already done in {work.path}")
    if cuts:
        say(f"scene cuts at input frames {cuts[:10]}{' ...' if len(cuts) > 10 else ''}")

    # ---- 2. restore segments ----------------------------------------------------------------
    pending = [s for s in segments if not work.is_done(s.index, seg_suffix)]
    trim = _bound_malloc()
    bar = Progress(progress, n_out, initial=done_frames)
    colour = info.color
    feed: _Feed | None = None
    tiles = TileSize(tile, log=say)  # a tile halved after out-of-memory stays halved
    try:
        finished, last = 0, -2
        for k, seg in enumerate(pending):
            if coordinator is not None and not coordinator.claim(seg.index, bar):
                continue  # another rank has it
            if feed is None or k != last + 1:  # the first segment, or one after a gap: seek
                if feed is not None:
                    feed.close()
                lo0 = seg.context(ctx_l, ctx_r)[0]
                reader = VideoReader(in_path, start=times[lo0], end=end, high_bit_depth=True,
                                     fps_for_folders=fps_for_folders)
                feed = _Feed(reader, lo0, times)
            last = k
            nxt = pending[k + 1].context(ctx_l, ctx_r)[0] if k + 1 < len(pending) else n_in
            common: dict[str, Any] = dict(
                keep_from=nxt, device=device, precision=precision, tile=tiles,
                tile_overlap=tile_overlap, resize=(oh, ow) if resize else None, high=high,
                rotation=rotation if mode == "folder" else 0,
                writer_kw=dict(fps=out_rate, codec=enc, crf=crf, preset=preset,
                               pix_fmt=pix_fmt, lossless=lossless, color=colour,
                               time_base=tb, sample_aspect_ratio=info.sample_aspect_ratio),
                bar=bar,
            )
            path = work.segment_path(seg.index, seg_suffix)
            bar.status(f"segment {seg.index + 1}/{len(segments)}: input frames "
                       f"{seg.start}-{seg.end - 1}")
            if retime:
                assert interp_fn is not None
                _run_retime_segment(interp_fn, seg, plans[seg.index], rel, feed, path, **common)
            else:
                _run_segment(net, seg, plans[seg.index], feed, path, ctx=(ctx_l, ctx_r),
                             chunk=chunk, overlap=overlap, **common)
            work.mark_done(seg.index, len(plans[seg.index]))
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
        raise _disk_error(exc, work.path) from None
    finally:
        if feed is not None:
            feed.close()
    if coordinator is not None and not coordinator.finish(
            work, [s.index for s in segments], seg_suffix, bar):
        bar.close()  # not rank 0: rank 0 joins
        return {"rank": coordinator.rank, "segments_encoded": len(coordinator.claimed)}
    bar.close()
    seconds_model = time.perf_counter() - t_start

    # ---- 3. join ----------------------------------------------------------------------------
    seg_files = [work.segment_path(s.index, seg_suffix) for s in segments]
    try:
        if mode == "folder":
            written = _assemble_folder(seg_files, out_path)
        else:
            mux = Progress(progress, n_out, stage="mux")
            seg_list = [(f, [t for (_, _, t) in p]) for f, p in zip(seg_files, plans, strict=True)]
            has_side = info.audio_streams > 0 or info.subtitle_streams > 0
            audio_end = Fraction(end) if end is not None else None
            written = concat_segments(
                seg_list, out_path, fps=out_rate, time_base=tb,
                audio_from=in_path if (has_side and not info.is_folder) else None,
                audio_range=(times[0], audio_end) if has_side else None,
                rotation=rotation, progress=lambda n: mux.update(n - mux.done),
            )
            mux.close()
    except (OSError, VideoError) as exc:
        raise _disk_error(exc, out_path) from None
    work.remove()
    seconds = time.perf_counter() - t_start
    return {
        "input": str(in_path), "output": str(out_path), "model": name, "kind": kind,
        "frames_in": n_in, "frames_out": written, "width": ow, "height": oh,
        "fps": str(out_rate), "bits": 16 if (high and mode == "folder") else (10 if high else 8),
        "codec": "png" if mode == "folder" else enc, "scene_cuts": cuts,
        "segments": len(segments), "resumed_segments": len(segments) - len(pending),
        "seconds": seconds, "seconds_model": seconds_model,
        "frames_per_second": (n_out - done_frames) / max(seconds, 1e-9),
    }
