"""SFNet sanity checks on CPU: a short training run must lower the loss; streamed inference
must agree with whole-sequence inference on a real clip (seam PSNR).

1. ``sfnet-lite`` from random initialisation, ``--steps`` Adam steps (lr 4e-4, betas 0.9/0.99) on
   random crops of the shared Vimeo septuplets: inputs im1, im3, im5, im7 degraded with BI ×4
   (``degrade(..., "bi")`` on the full frame, then an LR ``--patch``² crop), targets all 7 HR
   frames; flips and temporal reversal. Loss = :func:`stvsr.train.losses.spacetime_loss`. Reports
   the loss on a fixed held-out batch of crops before and after, and the mean training loss
   of the first and last 20 steps.
2. Seam check: every other frame of the first ``--seam-frames`` HR frames of Vid4 ``calendar``
   (BI ×4, an LR centre crop of ``--seam-crop``²) through the model whole and through the
   streaming path :func:`stvsr.infer.runner.restore_stream` (chunks of ``--window`` frames
   with ``--overlap``); PSNR of streamed vs whole (RGB, [0, 1]) per output frame, for the
   random-initialised and the briefly trained model.

Usage::

    .venv/bin/python benchmarks/sfnet_sanity.py [--steps 300] [--out sfnet_sanity.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import stvsr
from stvsr.data.degradations import degrade
from stvsr.data.video import list_frame_files, read_image
from stvsr.frames import frame_to_tensor as to_tensor
from stvsr.infer.runner import restore_stream
from stvsr.models.sfnet import SFNet
from stvsr.train.losses import spacetime_loss

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_septuplets(root: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(lr (4, 3, 64, 112), hr (7, 3, 256, 448))]`` for every septuplet under ``root``."""
    out = []
    for seq in sorted(root.glob("*/*")):
        hr = torch.stack([to_tensor(read_image(seq / f"im{i}.png")) for i in range(1, 8)])
        lr = degrade(hr[0::2], "bi", 4)
        out.append((lr, hr))
    return out


def crop_batch(data, batch: int, patch: int, rng: np.random.Generator):
    lrs, hrs = [], []
    for _ in range(batch):
        lr, hr = data[rng.integers(len(data))]
        h, w = lr.shape[-2:]
        y, x = rng.integers(0, h - patch + 1), rng.integers(0, w - patch + 1)
        lr_c = lr[..., y:y + patch, x:x + patch]
        hr_c = hr[..., 4 * y:4 * (y + patch), 4 * x:4 * (x + patch)]
        if rng.random() < 0.5:
            lr_c, hr_c = lr_c.flip(-1), hr_c.flip(-1)
        if rng.random() < 0.5:
            lr_c, hr_c = lr_c.flip(-2), hr_c.flip(-2)
        if rng.random() < 0.5:
            lr_c, hr_c = lr_c.flip(0), hr_c.flip(0)
        lrs.append(lr_c)
        hrs.append(hr_c)
    return torch.stack(lrs), torch.stack(hrs)


def psnr01(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def seam_check(model: SFNet, lr: torch.Tensor, window: int, overlap: int) -> dict:
    model.eval()
    with torch.no_grad():
        whole = model(lr)
    win = torch.stack(list(restore_stream(model, lr[0], chunk=window, overlap=overlap)))[None]
    per = [psnr01(win[:, t], whole[:, t]) for t in range(whole.shape[1])]
    finite = [p for p in per if math.isfinite(p)]
    return {
        "psnr_all_frames": psnr01(win, whole),
        "psnr_per_frame": per,
        "min_frame_psnr": min(finite) if finite else math.inf,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--patch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seam-frames", type=int, default=25)
    p.add_argument("--seam-crop", type=int, default=64)
    p.add_argument("--window", type=int, default=6)
    p.add_argument("--overlap", type=int, default=2)
    p.add_argument("--out", default="sfnet_sanity.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    # seam clip: Vid4 calendar, every other HR frame, BI x4, LR centre crop
    files = list_frame_files(SHARED / "Vid4" / "GT" / "calendar")[: a.seam_frames: 2]
    lr_clip = degrade(torch.stack([to_tensor(read_image(f)) for f in files]), "bi", 4)
    h, w = lr_clip.shape[-2:]
    c = a.seam_crop
    lr_clip = lr_clip[..., (h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c][None]

    model = stvsr.create_model("sfnet-lite", weights=None)
    result: dict = {"seam_random_init": seam_check(model, lr_clip, a.window, a.overlap)}

    data = load_septuplets(SHARED / "Vimeo90K" / "septuplet_HR" / "sequences")
    held_lr, held_hr = crop_batch(data, 4, a.patch, np.random.default_rng(123))

    def held_out_loss() -> float:
        model.eval()
        with torch.no_grad():
            out, s = model(held_lr, return_structure=True)
        return float(spacetime_loss(out, s, held_hr))

    start = held_out_loss()
    opt = torch.optim.Adam(model.parameters(), lr=4e-4, betas=(0.9, 0.99))
    losses = []
    t0 = time.perf_counter()
    model.train()
    for step in range(a.steps):
        lr, hr = crop_batch(data, a.batch, a.patch, rng)
        out, s = model(lr, return_structure=True)
        loss = spacetime_loss(out, s, hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 25 == 0 or step == a.steps - 1:
            print(f"step {step:4d}  loss {losses[-1]:.4f}  ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    end = held_out_loss()
    result.update({
        "steps": a.steps, "batch": a.batch, "lr_patch": a.patch,
        "held_out_loss_start": start, "held_out_loss_end": end,
        "train_loss_first20": float(np.mean(losses[:20])),
        "train_loss_last20": float(np.mean(losses[-20:])),
        "train_seconds": time.perf_counter() - t0,
        "seam_trained": seam_check(model, lr_clip, a.window, a.overlap),
        "seam_setup": {"clip": "Vid4 calendar", "hr_frames": a.seam_frames,
                       "lr_frames": lr_clip.shape[1], "lr_crop": c, "window": a.window,
                       "overlap": a.overlap},
    })
    for key in ("seam_random_init", "seam_trained"):
        r = result[key]
        print(f"{key}: PSNR streamed vs whole {r['psnr_all_frames']:.2f} dB, "
              f"worst frame {r['min_frame_psnr']:.2f} dB")
    print(f"held-out loss {start:.4f} -> {end:.4f}; train loss first20 "
          f"{result['train_loss_first20']:.4f} last20 {result['train_loss_last20']:.4f}")
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
