"""Seconds per output frame of space-time presets on this CPU, measured in one run.

Each model restores ``--frames`` LR frames (a smooth panning texture at the LR size) into
``2n - 1`` HR frames; the time of the forward pass (no I/O) of
``stvsr.infer.optimize(model, "cpu", precision)`` (what the engine runs) is divided by the
output count.
Compare models as ratios within one run: the machine is shared and noisy.

``python benchmarks/st_speed.py [--models sfnet-s-v1 sfnet-s stvsr-twostage stvsr-twostage-rife]
[--size 144x180] [--frames 4] [--threads 2] [--precision fp32 bf16] [--json out/st_speed.json]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+",
                    default=["sfnet-s-v1", "sfnet-s", "stvsr-twostage", "stvsr-twostage-rife"])
    ap.add_argument("--size", default="144x180", help="LR HxW")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=list(DTYPES))
    ap.add_argument("--json", default="out/st_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from stvsr import create_model
    from stvsr.infer import optimize

    h, w = (int(v) for v in args.size.lower().split("x"))
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 3, h // 4, w // 4 + args.frames, generator=g)
    tex = torch.nn.functional.interpolate(noise, size=(h, w + 4 * args.frames), mode="bicubic",
                                          align_corners=False).clamp(0, 1)
    x = torch.stack([tex[0, :, :, 4 * k: 4 * k + w] for k in range(args.frames)])[None]
    rows = []
    for name in args.models:
        model = create_model(name)
        for prec in args.precision:
            net = optimize(model, "cpu", prec)
            with torch.no_grad():
                net(x)  # warm-up
                t0 = time.perf_counter()
                for _ in range(args.repeats):
                    out = net(x)
            sec = (time.perf_counter() - t0) / args.repeats / out.shape[1]
            rows.append({"model": name, "precision": prec, "lr": f"{h}x{w}",
                         "frames_in": args.frames, "frames_out": int(out.shape[1]),
                         "s_per_output_frame": round(sec, 3)})
            print(f"{name:22s} {prec:5s} {sec:7.3f} s per output frame")
    out_path = Path(args.json)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
