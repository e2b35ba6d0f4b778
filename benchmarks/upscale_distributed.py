"""Wall time of ``stvsr upscale`` on 1 process vs several (torchrun, one thread each).

A smooth synthetic clip is written (x264, keyframe every 8 frames), then for each process count
P the same command runs from a fresh Python: ``python -m stvsr upscale ...`` for P = 1 and
``python -m torch.distributed.run --standalone --nproc-per-node P -m stvsr upscale ...`` for
P > 1, with ``OMP_NUM_THREADS=1`` (so P processes use P cores). The model defaults to
``basicvsr-vimeo-bi`` (official weights: every rank must build the same network; a randomly
initialised preset differs per process and is refused). Output is
lossless FFV1 and checked to be frame-identical across P. Reported: wall time of the whole
command (process start and imports included), rank 0's own ``seconds`` (scan, segments and
join, from its ``--progress json`` summary) and the speed-up over P = 1.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/upscale_distributed.py [--procs 1 2]
        [--frames 24] [--size 96x64] [--segment-frames 4] [--model basicvsr-vimeo-bi]
        [--json out.json]

The speed-up is bounded by the number of free cores: on a machine busy with other work the
extra process competes for the same CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_clip(path: Path, frames: int, width: int, height: int) -> None:
    import av

    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": "ultrafast", "g": "8", "keyint_min": "8"}
        for k in range(frames):
            img = np.stack([40 + 100 * xx / width, 60 + 2 * k + 0 * xx,
                            80 + 60 * yy / height], axis=-1)
            x0 = (3 * k) % max(1, width - 12)
            img[height // 4:height // 4 + 10, x0:x0 + 10] = 250
            f = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            f.pts = k
            c.mux(s.encode(f.reformat(format="yuv420p")))
        c.mux(s.encode(None))


def run(procs: int, clip: Path, out: Path, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK") and not k.startswith("SLURM_")}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH"))
                                        if p)
    cmd = [sys.executable]
    if procs > 1:
        cmd += ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs)]
    cmd += ["-m", "stvsr", "upscale", str(clip), str(out), "--model", args.model,
            "--codec", "ffv1", "--segment-frames", str(args.segment_frames),
            "--no-scene-detect", "--progress", "json"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    done = [json.loads(line) for line in (r.stdout + r.stderr).splitlines()
            if line.startswith("{") and '"stage": "done"' in line]
    summary = done[-1] if done else {}
    return {"procs": procs, "wall_s": wall, "rank0_seconds": summary.get("seconds"),
            "frames_out": summary.get("frames_out"), "segments": summary.get("segments"),
            "segments_by_rank": summary.get("segments_by_rank")}


def frames_of(path: Path) -> list[np.ndarray]:
    from stvsr.data.video import VideoReader

    return [f.rgb for f in VideoReader(path, high_bit_depth=True)]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", default="96x64", help="WxH of the input clip")
    p.add_argument("--segment-frames", type=int, default=4)
    p.add_argument("--model", default="basicvsr-vimeo-bi")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    w, h = (int(v) for v in args.size.lower().split("x"))
    results = []
    with tempfile.TemporaryDirectory(prefix="stvsr-dist-bench-") as tmp:
        clip = Path(tmp) / "in.mp4"
        write_clip(clip, args.frames, w, h)
        ref = None
        for procs in args.procs:
            out = Path(tmp) / f"out{procs}.mkv"
            res = run(procs, clip, out, args)
            frames = frames_of(out)
            if ref is None:
                ref = frames
            res["identical_to_first"] = len(frames) == len(ref) and all(
                np.array_equal(a, b) for a, b in zip(frames, ref, strict=True))
            results.append(res)
    base = results[0]["wall_s"]
    print(f"{args.model} {args.frames} frames {w}x{h}, segments of {args.segment_frames}, "
          f"{os.cpu_count()} CPUs, 1 thread per process")
    print(f"{'procs':>5} {'wall s':>8} {'rank 0 s':>9} {'speed-up':>8}  identical  by rank")
    for r in results:
        r["speedup"] = base / r["wall_s"]
        r0 = f"{r['rank0_seconds']:.2f}" if r["rank0_seconds"] is not None else "-"
        print(f"{r['procs']:>5} {r['wall_s']:>8.2f} {r0:>9} {r['speedup']:>8.2f}  "
              f"{str(r['identical_to_first']):>9}  {r['segments_by_rank'] or ''}")
    doc = {"info": {"model": args.model, "frames": args.frames, "size": f"{w}x{h}",
                    "segment_frames": args.segment_frames, "cpus": os.cpu_count(),
                    "machine": platform.processor() or platform.machine()},
           "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return doc


if __name__ == "__main__":
    main()
