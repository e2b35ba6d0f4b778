"""The ``stvsr upscale`` subcommand: its options and its handler."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from stvsr.infer.defaults import DEFAULT_MODEL, INTERPOLATION_MODEL

if TYPE_CHECKING:
    from stvsr.infer.scheduler import Scheduler


def add_upscale_parser(sub, add_run_options: Callable[..., None]) -> None:
    """Register ``stvsr upscale`` on the subparsers ``sub`` (``add_run_options`` adds --weights,
    --device, --precision, --chunk, --overlap, --tile, --quiet)."""
    p = sub.add_parser(
        "upscale", help="restore a video file or image folder (resumable, streaming)",
        description="Upscale (and, with a space-time model, double the frame rate of) a video "
                    "file or a folder of frames; with --scale 1, interpolate frames only, by any "
                    "rational factor (--fps-factor 5/2: 24000/1001 -> 60000/1001 fps). Output is "
                    "written in segments to OUTPUT.stvsr-work/; re-running an interrupted "
                    "command resumes it.")
    p.add_argument("input", help="video file or folder of frames")
    p.add_argument("output", help="video file (.mp4/.mkv/.mov/.avi) or a name without "
                                  "extension for a folder of PNG frames")
    p.add_argument("--model", default=None,
                   help=f"preset (default: {DEFAULT_MODEL}; {INTERPOLATION_MODEL} with --scale 1)")
    # auto: bf16 on CPUs with native bf16 cost sfnet-s 0.016 dB on the held-out clips (0.010
    # on their H.264 CRF 28 versions) and runs ~1.6x faster; `stvsr eval` stays fp32
    add_run_options(p, precision="auto")
    p.add_argument("--codec", default="libx264", help="libx264, libx265, ffv1 (default libx264)")
    p.add_argument("--crf", type=int, default=18, help="x264/x265 quality (default 18)")
    p.add_argument("--preset", default="medium", help="encoder preset (x264/x265)")
    p.add_argument("--pix-fmt", default=None,
                   help="output pixel format (default: yuv420p, or yuv420p10le for >8-bit input)")
    p.add_argument("--lossless", action="store_true",
                   help="lossless encoding (x264 qp 0 / x265 lossless / FFV1)")
    p.add_argument("--scale", type=float, default=None,
                   help="output scale factor (default: the model's; others resize its output "
                        "with MATLAB bicubic)")
    p.add_argument("--fps-factor", default=None, metavar="F",
                   help="frame-rate factor: 1 keeps the rate, 2 doubles it (space-time models; "
                        "their default); any rational >= 1 such as 2.5 or 5/2 with a model that "
                        f"interpolates at any time ({INTERPOLATION_MODEL})")
    p.add_argument("--output-fps", default=None, metavar="RATE",
                   help="output frame rate instead of --fps-factor, e.g. 60000/1001 or 60 "
                        "(factor = RATE / input rate)")
    p.add_argument("--start", type=float, default=None, help="start time in seconds")
    p.add_argument("--end", type=float, default=None, help="end time in seconds")
    p.add_argument("--segment-frames", type=int, default=None,
                   help="input frames per resumable segment (default 4 x chunk)")
    p.add_argument("--no-scene-detect", action="store_true",
                   help="do not split the stream at scene cuts")
    p.add_argument("--scene-threshold", type=float, default=0.12,
                   help="minimum luma distance (0-1) of a scene cut (default 0.12)")
    p.add_argument("--fps", type=float, default=25.0,
                   help="frame rate of a folder of frames (default 25)")
    p.add_argument("--progress", choices=["bar", "json", "none"], default="bar",
                   help="progress display; json = one object per line on stderr")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan and an estimate of time and memory; write nothing")


def run_upscale(args: argparse.Namespace) -> None:
    """Handle ``stvsr upscale`` (errors propagate as :class:`~stvsr.errors.StvsrError`).
    Started by ``torchrun`` or ``srun`` with several ranks, the ranks share the segments
    (:mod:`stvsr.infer.distributed`)."""
    from stvsr.infer.defaults import resolve_device, resolve_precision
    from stvsr.infer.distributed import launch_env, run_ranked

    args.device = resolve_device(args.device)
    args.precision = resolve_precision(args.precision, args.device)
    env = launch_env()
    if env.world > 1 and args.dry_run:
        if env.rank == 0:
            upscale_from_args(args)
        return
    if env.world > 1:
        run_ranked(args, env, upscale_from_args)
    else:
        upscale_from_args(args)


def upscale_from_args(args: argparse.Namespace, scheduler: Scheduler | None = None) -> None:
    """Run :func:`~stvsr.infer.engine.upscale_video` with the options of the parsed command
    line (built once, :meth:`UpscaleOptions.from_args`) and print its result."""
    from stvsr.infer.engine import upscale_video
    from stvsr.infer.options import UpscaleOptions

    progress = "none" if getattr(args, "quiet", False) else args.progress
    say = (lambda s: None) if progress == "none" and not args.dry_run else (
        lambda s: print(s, file=sys.stderr))
    summary = upscale_video(
        args.input, args.output, UpscaleOptions.from_args(args), model=args.model,
        weights=args.weights, device=args.device, precision=args.precision, progress=progress,
        dry_run=args.dry_run, log=say, scheduler=scheduler)
    if scheduler is not None:
        if not scheduler.is_main:
            return
        summary.update(scheduler.report())
    if args.dry_run:
        if progress == "json":
            print(json.dumps(summary, default=str), file=sys.stderr)
        return
    if progress == "json":
        print(json.dumps({"stage": "done", **summary}, default=str), file=sys.stderr)
    if getattr(args, "quiet", False):
        return
    print(f"wrote {summary['output']}: {summary['frames_out']} frames "
          f"{summary['width']}x{summary['height']} at {summary['fps']} fps, "
          f"{summary['codec']} {summary['bits']}-bit; {summary['segments']} segments "
          f"({summary['resumed_segments']} resumed"
          f"{f', {scheduler.world} ranks' if scheduler is not None else ''}), "
          f"{len(summary['scene_cuts'])} scene cuts; "
          f"{summary['seconds']:.1f} s ({summary['frames_per_second']:.2f} frames/s)")
