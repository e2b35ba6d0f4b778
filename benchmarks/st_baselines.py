"""Space-time baselines on Vid4 (windowed and full protocols) and the shared Vimeo septuplets.

    python benchmarks/st_baselines.py stvsr-bicubic stvsr-twostage --json out/st_baselines.json

Prints one line per (model, set, protocol) and per clip; writes the per-clip means as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import stvsr
from stvsr.eval import evaluate_spacetime

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--json", default="out/st_baselines.json")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sets = (("vimeo16", args.shared / "Vimeo90K" / "septuplet_HR", "windowed"),
            ("vid4_windowed", args.shared / "Vid4" / "GT", "windowed"),
            ("vid4_full", args.shared / "Vid4" / "GT", "full"))
    out = {}
    for name in args.models:
        model = stvsr.create_model(name)
        for label, data, proto in sets:
            r = evaluate_spacetime(model, data, protocol=proto, degradation="bi", progress=False)
            out[f"{name}/{label}"] = {
                "mean": r["mean"], "seconds": r["seconds"],
                "clips": {k: {kk: vv for kk, vv in v.items() if kk != "per_frame"}
                          for k, v in r["clips"].items()}}
            m = r["mean"]
            print(f"{name:15s} {label:14s} Y {m['psnr_y']:.3f}/{m['ssim_y']:.4f} "
                  f"in {m['psnr_y_input']:.3f} new {m['psnr_y_new']:.3f}  {r['seconds']:.0f}s",
                  flush=True)
            for k, v in r["clips"].items():
                print(f"   {k:12s} {v['psnr_y']:.3f}/{v['ssim_y']:.4f} "
                      f"in {v['psnr_y_input']:.3f} new {v['psnr_y_new']:.3f}", flush=True)
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
