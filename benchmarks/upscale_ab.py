"""Before/after speed of `stvsr upscale` between two source trees (e.g. before and after a
refactor), measured in one run, alternating the trees (ABBA) so that machine noise and
run order hit both alike.

Each timed run is a fresh process ``python -m stvsr upscale FRAMES OUT --model M --precision P``
with ``PYTHONPATH`` set to the tree's ``src``; the time is read from the run itself (wall-clock
around the process, minus nothing: start-up counts the same for both trees). Reported: seconds
per output frame per tree and the ratio after / before (< 1 = faster).

Usage::

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/upscale_ab.py --before /tmp/before --after . \
        [--frames ../shared/data/REDS/LR_x4_demo/000] [--count 6] [--models edvr-m sfnet-s] \
        [--precisions fp32 bf16] [--repeat 2] [--json out/upscale_ab.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_FRAMES = Path(__file__).resolve().parents[2] / "shared/data/REDS/LR_x4_demo/000"


def _run(tree: Path, frames: Path, model: str, precision: str, threads: int) -> tuple[float, int]:
    out = Path(tempfile.mkdtemp(prefix="ab_out_"))
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "stvsr", "upscale", str(frames), str(out / "frames"),
           "--model", model, "--precision", precision, "--device", "cpu", "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, cwd=tree)
    seconds = time.perf_counter() - t0
    n = len(list((out / "frames").glob("*.png")))
    shutil.rmtree(out, ignore_errors=True)
    return seconds, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, required=True, help="source tree before")
    ap.add_argument("--after", type=Path, default=Path("."), help="source tree after")
    ap.add_argument("--frames", type=Path, default=DEFAULT_FRAMES, help="folder of LR PNGs")
    ap.add_argument("--count", type=int, default=6, help="first N frames of --frames")
    ap.add_argument("--models", nargs="+", default=["edvr-m", "sfnet-s"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.frames.is_dir():
        print(f"error: no frames folder {args.frames}; pass --frames DIR", file=sys.stderr)
        return 2
    clip = Path(tempfile.mkdtemp(prefix="ab_in_"))
    for f in sorted(args.frames.glob("*.png"))[: args.count]:
        shutil.copy(f, clip / f.name)
    rows = []
    for model in args.models:
        for precision in args.precisions:
            times: dict[str, list[float]] = {"before": [], "after": []}
            outs = 0
            for rep in range(args.repeat):  # ABBA order: neither side always runs second
                for side in (("before", "after") if rep % 2 == 0 else ("after", "before")):
                    tree = (args.before if side == "before" else args.after).resolve()
                    sec, outs = _run(tree, clip, model, precision, args.threads)
                    times[side].append(sec)
            b, a = min(times["before"]), min(times["after"])
            row = {"model": model, "precision": precision, "output_frames": outs,
                   "before_s_per_frame": b / outs, "after_s_per_frame": a / outs,
                   "ratio_after_before": a / b, "runs": times}
            rows.append(row)
            print(f"{model:10s} {precision}: before {b / outs:.3f} s/frame, after "
                  f"{a / outs:.3f} s/frame, after/before {a / b:.3f}", flush=True)
    shutil.rmtree(clip, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"frames": str(args.frames), "count": args.count,
                                         "threads": args.threads, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
