"""Frame interpolation (T-VSR, scale 1) on the shared Vimeo-90K septuplets.

Every t = ½ triplet of every septuplet (im1, im3 → im2; im2, im4 → im3; … im5, im7 → im6: five
per septuplet) is interpolated from its two outer frames and scored against the real middle
frame (PSNR on Y as MATLAB's rgb2ycbcr and on RGB, 8-bit outputs; mean over triplets). Methods:
frame averaging, the two-stage baseline's SpyNet interpolation (linear motion + occlusion-aware
blending, SpyNet on the frames themselves), RIFE 3.9 and RIFE 4.25/4.26 (``rife4``). The
shared septuplets are Vimeo-90K *training-list* clips: RIFE's training data may include them,
so these are no test-set numbers.

``python benchmarks/interp_vimeo.py [--shared ../shared] [--json out/interp_vimeo.json]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--json", default="out/interp_vimeo.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from stvsr import create_model
    from stvsr.data.images import read_image
    from stvsr.frames import frame_to_tensor
    from stvsr.metrics import psnr, to_uint8
    from stvsr.ops.flow import flow_warp, midpoint_motion

    root = Path(args.shared) / "data" / "Vimeo90K" / "septuplet_HR" / "sequences"
    folders = sorted(p for p in root.glob("*/*") if p.is_dir())
    if not folders:
        raise SystemExit(f"no septuplets under {root}")
    rife, rife4 = create_model("rife"), create_model("rife4")
    spynet = create_model("basicvsr-vimeo-bi").spynet

    def spynet_mid(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        f01, f10 = spynet(a, b), spynet(b, a)
        m = midpoint_motion(f01, f10, 2.0)
        w0 = flow_warp(a, m.ft0, padding_mode="border")
        w1 = flow_warp(b, m.ft1, padding_mode="border")
        eps = 1e-4
        return (m.w0 * w0 + m.w1 * w1 + eps * 0.5 * (w0 + w1)) / (m.w0 + m.w1 + eps)

    methods = {"frame averaging": lambda a, b: 0.5 * (a + b), "spynet": spynet_mid,
               "rife": lambda a, b: rife.interpolate(a, b),
               "rife4": lambda a, b: rife4.interpolate(a, b)}
    scores: dict[str, dict[str, list[float]]] = {m: {"y": [], "rgb": []} for m in methods}
    seconds = {m: 0.0 for m in methods}
    for folder in folders:
        frames = [frame_to_tensor(read_image(folder / f"im{k}.png"))[None] for k in range(1, 8)]
        for k in range(5):
            a, gt, b = frames[k], frames[k + 1], frames[k + 2]
            for name, fn in methods.items():
                t0 = time.perf_counter()
                with torch.no_grad():
                    out = fn(a, b)
                seconds[name] += time.perf_counter() - t0
                o, g = to_uint8(out[0]), to_uint8(gt[0])
                scores[name]["y"].append(psnr(o, g, y_channel=True))
                scores[name]["rgb"].append(psnr(o, g, y_channel=False))
    n = len(folders) * 5
    result = {"septuplets": len(folders), "triplets": n,
              "methods": {m: {"psnr_y": float(np.mean(s["y"])),
                              "psnr_rgb": float(np.mean(s["rgb"])),
                              "seconds_per_frame": seconds[m] / n} for m, s in scores.items()}}
    for m, r in result["methods"].items():
        print(f"{m:16s} PSNR-Y {r['psnr_y']:.3f}  RGB {r['psnr_rgb']:.3f}  "
              f"{r['seconds_per_frame']:.3f} s/frame")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
