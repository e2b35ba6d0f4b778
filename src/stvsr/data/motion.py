"""Synthetic motion of a still image: a smooth sub-pixel camera path, pasted moving patches
(occlusion) and an optional time-varying non-rigid deformation (see ``docs/DATA_CARD.md``)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from stvsr.errors import DataError
from stvsr.frames import frame_to_tensor, to_uint8

__all__ = ["animate_still"]


def _sample(img: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor, padding: str) -> torch.Tensor:
    """Bicubic sample ``img (C, H, W)`` at pixel coordinates ``gx, gy (h, w)`` → ``(C, h, w)``."""
    _, hh, ww = img.shape
    grid = torch.stack([(2 * gx + 1) / ww - 1, (2 * gy + 1) / hh - 1], dim=-1)[None]
    out = F.grid_sample(img[None], grid, mode="bicubic", padding_mode=padding,
                        align_corners=False)
    return out[0]


def animate_still(image: np.ndarray, frames: int, rng: np.random.Generator, *,
                  size: tuple[int, int] = (256, 448), max_speed: float = 6.0,
                  objects: tuple[int, int] = (1, 3), nonrigid: float = 0.0) -> list[np.ndarray]:
    """Make a clip from a still ``(H, W, 3) uint8`` image.

    Camera: the view centre follows ``c0 + v t + a t²/2`` (``|v|`` up to ``max_speed`` px per
    frame), zoom ``z0 (1 + dz t)`` and rotation ``ω t`` (≤ 0.5° per frame); every frame is a
    bicubic resampling of the still (sub-pixel motion). Then ``objects`` patches cut from the
    still (24–96 px, feathered ellipses) move along their own quadratic paths at up to
    ``1.5 max_speed``. ``nonrigid > 0`` adds a smooth deformation of the background that
    changes over time (two sinusoidal displacement waves of up to ``nonrigid`` px travelling
    across the frame), so motion is not a single rigid transform. Returns ``frames`` arrays
    ``(h, w, 3) uint8`` with ``(h, w) = size`` (shrunk to fit the still).
    """
    src = frame_to_tensor(image)
    _, hs, ws = src.shape
    h, w = min(size[0], hs), min(size[1], ws)
    h, w = h - h % 4, w - w % 4
    if h < 32 or w < 32:
        raise DataError(f"still image {ws}x{hs} is too small to animate")
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    yc, xc = ys - (h - 1) / 2, xs - (w - 1) / 2
    speed = rng.uniform(0.3, max_speed)
    ang = rng.uniform(0, 2 * np.pi)
    v = speed * np.array([np.cos(ang), np.sin(ang)])
    a = rng.normal(0, 0.15, 2)
    z0, dz = rng.uniform(1.0, 1.15), rng.uniform(-0.01, 0.01)
    omega = np.deg2rad(rng.uniform(-0.5, 0.5))
    travel = np.abs(v) * frames + np.abs(a) * frames**2 / 2
    c0 = np.array([rng.uniform(min(w / 2 + travel[0], ws / 2), max(ws - w / 2 - travel[0], ws / 2)),
                   rng.uniform(min(h / 2 + travel[1], hs / 2),
                               max(hs - h / 2 - travel[1], hs / 2))])
    c0 -= v * frames / 2  # centre the path
    objs = []
    for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
        ph, pw = (int(rng.integers(24, min(96, hs // 2, ws // 2) + 1)) for _ in range(2))
        oy, ox = int(rng.integers(0, hs - ph + 1)), int(rng.integers(0, ws - pw + 1))
        patch = src[:, oy: oy + ph, ox: ox + pw]
        if rng.random() < 0.5:
            patch = patch.flip(-1)
        py, px = torch.meshgrid(torch.linspace(-1, 1, ph), torch.linspace(-1, 1, pw),
                                indexing="ij")
        r = torch.sqrt(py**2 + px**2)
        feather = 2.0 / min(ph, pw)
        alpha = ((1 - r) / feather).clamp(0, 1)[None]
        ospeed = rng.uniform(0.5, 1.5 * max_speed)
        oang = rng.uniform(0, 2 * np.pi)
        objs.append({
            "tex": torch.cat([patch, alpha]),
            "p0": np.array([rng.uniform(0, w), rng.uniform(0, h)]),
            "v": ospeed * np.array([np.cos(oang), np.sin(oang)]),
            "a": rng.normal(0, 0.2, 2),
        })
    waves = []
    if nonrigid > 0:
        for _ in range(2):
            k = rng.uniform(1.0, 4.0) * 2 * np.pi / max(h, w)
            kang = rng.uniform(0, 2 * np.pi)
            waves.append((rng.uniform(0.3, 1.0) * nonrigid, k * np.cos(kang), k * np.sin(kang),
                          rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.6),
                          rng.uniform(0, 2 * np.pi)))
    out = []
    for t in range(frames):
        c = c0 + v * t + a * t * t / 2
        z = z0 * (1 + dz * t)
        th = omega * t
        cos, sin = float(np.cos(th)), float(np.sin(th))
        gx = c[0] + (cos * xc - sin * yc) / z
        gy = c[1] + (sin * xc + cos * yc) / z
        for amp, kx, ky, phase, speed_, dang in waves:
            d = amp * torch.sin(kx * xs + ky * ys + phase + speed_ * t)
            gx = gx + d * float(np.cos(dang))
            gy = gy + d * float(np.sin(dang))
        frame = _sample(src, gx, gy, "reflection")
        for o in objs:
            p = o["p0"] + o["v"] * t + o["a"] * t * t / 2
            th_ = o["tex"]
            # patch pixel coordinates of every output pixel (patch centred at p)
            u = xs - float(p[0]) + (th_.shape[2] - 1) / 2
            vv = ys - float(p[1]) + (th_.shape[1] - 1) / 2
            s = _sample(th_, u, vv, "zeros")
            m = s[3:].clamp(0, 1)
            frame = frame * (1 - m) + s[:3] * m
        out.append(to_uint8(frame))
    return out
