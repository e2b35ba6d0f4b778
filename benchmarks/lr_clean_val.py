"""Held-out validation of an LR compression-removal model (LRClean) on corpus clips.

For each clip folder under ``--data`` (default ``out/val_clips``: the corpus clips reserved for
validation, never Vid4) the first ``--frames`` HR frames are downscaled (``bi`` and ``bd``) to
the clean LR clip, which is encoded by each ``--codec`` chain as one stream; the script prints
the Y-PSNR of the encoded clip and of the cleaned clip against the clean LR (mean of clip
means), so the gain of the cleaner is measured where it works, at LR size.

    python benchmarks/lr_clean_val.py \
        --weights out/train/lr_clean_cpu/checkpoints/step_0000536.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from stvsr import create_model
from stvsr.data.chain import parse_chain
from stvsr.data.degradations import modcrop
from stvsr.data.images import list_frame_files, read_image
from stvsr.eval.source import clip_generator
from stvsr.frames import frame_to_tensor, to_uint8
from stvsr.metrics import psnr

CODECS = ("h264:crf=28", "h264:crf=25,preset=medium,pix_fmt=yuv444p,fps=10", "h264:crf=35")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="LRClean checkpoint")
    p.add_argument("--model", default="lr-clean-untrained",
                   help="preset whose architecture the checkpoint fits")
    p.add_argument("--data", default="out/val_clips")
    p.add_argument("--frames", type=int, default=19)
    p.add_argument("--codec", action="append", default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    model = create_model(a.model, weights=a.weights)
    clips = sorted(d for d in Path(a.data).iterdir() if d.is_dir())
    rows: dict[str, dict[str, list[float]]] = {}
    for codec in a.codec or CODECS:
        for down in ("bi", "bd"):
            key = f"{down}+{codec}"
            chain = parse_chain(key)
            coded_s, cleaned_s = [], []
            for clip in clips:
                files = list_frame_files(clip)[: a.frames]
                hr = torch.stack([modcrop(frame_to_tensor(read_image(f)), 4) for f in files])
                clean, coded = chain.split(hr, clip_generator(0, clip.name))
                with torch.no_grad():
                    cleaned = model(coded[None])[0].clamp(0, 1)
                ref = [to_uint8(f) for f in clean]
                coded_s.append(np.mean([psnr(to_uint8(f), r, y_channel=True)
                                        for f, r in zip(coded, ref, strict=True)]))
                cleaned_s.append(np.mean([psnr(to_uint8(f), r, y_channel=True)
                                          for f, r in zip(cleaned, ref, strict=True)]))
            rows[key] = {"coded": coded_s, "cleaned": cleaned_s}
            print(f"{key:<62} coded {np.mean(coded_s):6.2f}  cleaned {np.mean(cleaned_s):6.2f}"
                  f"  gain {np.mean(cleaned_s) - np.mean(coded_s):+.2f} dB", flush=True)
    result = {"weights": str(a.weights), "clips": [c.name for c in clips], "frames": a.frames,
              "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
