"""``stvsr upscale --dry-run``: the plan of a run and an estimate of its time and memory,
written as lines and returned as a dict; nothing is written to disk."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import torch
from torch import nn

from stvsr.data.video import VideoInfo, count_frames
from stvsr.infer.execute import RETIME_BATCH
from stvsr.infer.job import UpscaleJob
from stvsr.infer.layout import layout_of
from stvsr.infer.retime import count_retimed

__all__ = ["dry_run_report", "estimate"]


def estimate(net: nn.Module, info: VideoInfo, device: str, precision: str, chunk: int,
             overlap: int, out_hw: tuple[int, int], held: int | None = None
             ) -> dict[str, float]:
    """Seconds per input frame from a timed optimized forward pass at the run's precision on a
    small crop, scaled by pixel count; peak memory from the frames held at once × (input +
    features + output)."""
    from stvsr.infer.optimize import optimize

    h, w = info.height, info.width
    ch, cw = min(h, 64), min(w, 64)
    t = 3 if net.kind != "window" else int(net.num_frames)
    x = torch.rand(1, max(t, 2), 3, ch, cw)
    fast = optimize(net, device, precision)
    with torch.inference_mode():
        fast(x.to(device))  # warm-up
        t0 = time.perf_counter()
        fast(x.to(device))
        dt = time.perf_counter() - t0
    per_frame = dt / (1 if net.kind == "window" else x.shape[1]) * (h * w) / (ch * cw)
    if held is None:  # input frames held at once
        held = int(net.num_frames) if net.kind == "window" else (
            chunk + sum(layout_of(net).context(overlap)))
    feat = int(getattr(net, "mid_channels", getattr(net, "num_feat", 64)) or 64)
    oh, ow = out_hw
    mem = held * (h * w * (3 + 2 * feat) + oh * ow * 3 * 2) * 4
    return {"seconds_per_input_frame": per_frame, "memory_bytes": float(mem)}


def _input_frames(job: UpscaleJob) -> int:
    """Input frames of the run: counted, or from the selected time range's length."""
    o, info = job.options, job.info
    if o.start is None and o.end is None:
        return count_frames(job.input)
    t0 = Fraction(o.start or 0)
    t1 = Fraction(o.end) if o.end is not None else (info.duration or t0)
    return max(1, math.ceil((t1 - t0) * job.in_rate))


def dry_run_report(job: UpscaleJob, say: Callable[[str], None]) -> dict[str, Any]:
    """The ``--dry-run`` step instead of steps 2-5: say the plan and the estimate, return them
    as a summary dict (``"dry_run": True``)."""
    from stvsr.ops.dcn import backend_summary

    info, o = job.info, job.options
    n_in = _input_frames(job)
    if job.retime:
        n_out = count_retimed((n_in - 1) / job.in_rate, job.out_rate)
    else:
        n_out = job.layout.n_out(n_in) if job.interpolate else n_in
    dcn_line = backend_summary(job.net, job.device)
    assert o.chunk is not None and o.overlap is not None  # resolved by resolve_job
    est = estimate(job.net, info, job.device, job.precision, o.chunk, o.overlap, job.out_size,
                   held=RETIME_BATCH + 2 if job.retime else None)
    secs = est["seconds_per_input_frame"] * n_in
    if job.retime:  # one pair interpolation per new frame (a forward of 3 frames makes 2)
        new = max(0, n_out - math.ceil(n_in / job.factor.denominator))
        secs = est["seconds_per_input_frame"] * 3 / 2 * new
    oh, ow = job.out_size
    summary = {
        "dry_run": True, "input": str(job.input), "model": job.name, "kind": job.kind,
        "input_size": f"{info.width}x{info.height}", "input_fps": str(job.in_rate),
        "input_frames": n_in, "pix_fmt": info.pix_fmt, "bit_depth": info.bit_depth,
        "color": info.color, "rotation": info.rotation, "audio_streams": info.audio_streams,
        "output": str(job.output), "output_size": f"{ow}x{oh}",
        "output_fps": str(job.out_rate), "fps_factor": str(job.factor), "output_frames": n_out,
        "codec": job.codec, "bits": job.bits,
        "estimated_seconds": secs, "estimated_memory_bytes": est["memory_bytes"],
        "dcn_backend": dcn_line,
        "estimate_method": "timed forward pass on a 64x64 crop scaled by pixel count; "
                           "memory = frames held x (input + 2x features + output) x 4 B",
    }
    say(f"input : {job.input} {info.width}x{info.height} {info.pix_fmt} ({info.bit_depth}-bit) "
        f"{float(job.in_rate):.3f} fps ({job.in_rate}), {n_in} frames, audio streams: "
        f"{info.audio_streams}, rotation {info.rotation}")
    say(f"model : {job.name} ({job.kind}, x{job.model_scale}) on {job.device} {job.precision}")
    if dcn_line:
        say(f"        {dcn_line}")
    say(f"output: {job.output} {ow}x{oh} {float(job.out_rate):.3f} fps ({job.out_rate}), "
        f"{n_out} frames, {summary['codec']} {summary['bits']}-bit")
    if job.retime:
        say(f"time  : x{job.factor} ({float(job.factor):g}): output frame k at exactly k x "
            f"{1 / job.out_rate} s, interpolated at its own time between the inputs around it; "
            "input frames on that grid copied unchanged")
    say(f"estimate: {secs:.1f} s (timed 64x64 crop, scaled by pixels), peak memory about "
        f"{est['memory_bytes'] / 2**30:.2f} GiB (frames held x feature channels)")
    return summary
