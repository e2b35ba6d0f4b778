"""The ``stvsr upscale`` subcommand: its options and its handler."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from stvsr.infer.defaults import DEFAULT_MODEL


def add_upscale_parser(sub, add_run_options: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("upscale", help="restore a video file or image folder")
    p.add_argument("input", help="video file or folder of frames")
    p.add_argument("output", help="video file (.mp4/.mkv/.mov) or a folder for PNG frames")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"preset (default: {DEFAULT_MODEL})")
    add_run_options(p)
    p.add_argument("--codec", default="libx264", help="libx264, libx265, ffv1 (default libx264)")
    p.add_argument("--crf", type=int, default=18)
    p.add_argument("--preset", default="medium", help="encoder preset (x264/x265)")
    p.add_argument("--pix-fmt", default=None, help="output pixel format (default: codec's)")
    p.add_argument("--lossless", action="store_true", help="lossless encoding (FFV1 / x264 qp 0)")
    p.add_argument("--start", type=float, default=None, help="start time in seconds")
    p.add_argument("--end", type=float, default=None, help="end time in seconds")


def run_upscale(args: argparse.Namespace) -> None:
    from stvsr.infer.engine import upscale_video

    summary = upscale_video(
        args.input, args.output, model=args.model, weights=args.weights, device=args.device,
        precision=args.precision, chunk=args.chunk, overlap=args.overlap, tile=args.tile,
        codec=args.codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt,
        lossless=args.lossless, start=args.start, end=args.end, progress=not args.quiet)
    print(f"wrote {summary['output']}: {summary['frames_out']} frames "
          f"{summary['width']}x{summary['height']} at {summary['fps']} fps "
          f"in {summary['seconds']:.1f} s ({summary['frames_per_second']:.2f} frames/s)")
