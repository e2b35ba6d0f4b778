"""The ``stvsr report`` subcommand, and the ``--report`` hooks of ``eval`` and ``upscale``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from stvsr.report.build import MAX_FRAMES


def add_parser(sub) -> None:  # sub: argparse's private subparsers type
    """Register ``stvsr report RESULT... -o report.html`` on the subparsers ``sub``."""
    p = sub.add_parser(
        "report", help="one self-contained HTML page from eval results and upscaled videos",
        description="Build one HTML file (images embedded; works offline from file://) with a "
                    "numbers table, per-frame PSNR charts and before/after sliders with "
                    "zoomable crops, from stvsr eval JSON files and/or upscaled videos.")
    p.add_argument("results", nargs="*", metavar="RESULT",
                   help="JSON files written by stvsr eval --json (S-VSR and ST-VSR)")
    p.add_argument("-o", "--output", required=True, help="the HTML file to write")
    p.add_argument("--video", nargs=2, action="append", default=[], metavar=("INPUT", "OUTPUT"),
                   help="an upscale run: its input and output video (or frame folders); "
                        "repeat for several")
    p.add_argument("--max-frames", type=int, default=MAX_FRAMES,
                   help=f"frame viewers in the whole page (default {MAX_FRAMES})")
    p.add_argument("--external", action="store_true",
                   help="write the images into OUTPUT_files/ beside the page instead of "
                        "embedding them")
    p.add_argument("--jpeg", type=int, default=None, metavar="QUALITY",
                   help="JPEG images of this quality instead of PNG (smaller, lossy)")
    p.add_argument("--title", default="stvsr report")
    p.add_argument("--video-offset", type=float, default=0.0,
                   help="input time (s) of the output's first frame, e.g. upscale --start")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from stvsr.report.build import build_report

    build_report(args.output, args.results, [tuple(v) for v in args.video],
                 max_frames=args.max_frames, external=args.external, jpeg_quality=args.jpeg,
                 title=args.title, video_offset=args.video_offset)


def report_after_eval(result: dict[str, Any], json_path: str | None, out: str) -> None:
    """``stvsr eval --report``: the report of the result just computed."""
    from stvsr.report.build import build_report, figures_dir

    figs = figures_dir(result, Path(json_path) if json_path else None)
    build_report(out, [(result, figs, Path(json_path).name if json_path else "stvsr eval")])


def report_after_upscale(args: argparse.Namespace) -> None:
    """``stvsr upscale --report``: input against output of the run just finished."""
    from stvsr.report.build import build_report

    build_report(args.report, [], [(args.input, args.output)],
                 video_offset=float(args.start or 0.0),
                 log=(lambda s: None) if getattr(args, "quiet", False) else print)
