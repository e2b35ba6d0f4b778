"""Image-quality metrics on 8-bit frames, as in docs/evaluation.md.

* Frames are compared as uint8 ``(H, W, 3)`` RGB arrays; model outputs are clamped to [0, 1]
  and rounded to 8-bit first (:func:`to_uint8`, from :mod:`stvsr.frames`: round half to even,
  the rule of every frame ``stvsr upscale`` writes).
* Y metrics use the unrounded BT.601 luma of the 8-bit frames (:func:`stvsr.ops.color.rgb_to_y`,
  float64 on the [0, 255] scale), RGB metrics use the three channels.
* PSNR = ``10 log10(255^2 / MSE)`` in float64 (``inf`` for identical frames).
* SSIM: the original MATLAB ``ssim_index``: 11x11 Gaussian window (sigma 1.5), "valid" region
  only, ``C1 = (0.01*255)^2``, ``C2 = (0.03*255)^2``, float64; RGB SSIM is the mean over
  channels.
* Averages: per frame -> per clip -> mean of the clip means (:class:`MetricAverager`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from stvsr.errors import StvsrError
from stvsr.frames import to_uint8
from stvsr.ops.color import rgb_to_y

__all__ = [
    "METRIC_KEYS",
    "MetricAverager",
    "frame_metrics",
    "psnr",
    "ssim",
    "ssim_window",
    "to_uint8",
]

METRIC_KEYS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")

_C1 = (0.01 * 255.0) ** 2
_C2 = (0.03 * 255.0) ** 2


def _prepare(
    a: np.ndarray, b: np.ndarray, crop_border: int, y_channel: bool, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Check two ``(H, W, 3)`` frames, crop, convert to float64 ``(C, H', W')`` planes."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise StvsrError(f"{name}: frames differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 3 or a.shape[-1] != 3:
        raise StvsrError(f"{name}: expected (H, W, 3) RGB frames, got {a.shape}")
    if crop_border < 0:
        raise StvsrError(f"{name}: crop_border must be >= 0, got {crop_border}")
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        return rgb_to_y(a)[None], rgb_to_y(b)[None]
    fa = np.moveaxis(a.astype(np.float64), -1, 0)
    fb = np.moveaxis(b.astype(np.float64), -1, 0)
    return fa, fb


def psnr(a: np.ndarray, b: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """PSNR in dB between two uint8 ``(H, W, 3)`` frames (``inf`` when identical)."""
    fa, fb = _prepare(a, b, crop_border, y_channel, "psnr")
    if fa.size == 0:
        raise StvsrError("psnr: nothing left after cropping the border")
    mse = float(np.mean((fa - fb) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0 * 255.0 / mse)


def ssim_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """1-D factor of MATLAB ``fspecial('gaussian', size, sigma)`` (float64, sums to 1)."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(t * t) / (2.0 * sigma * sigma))
    return g / g.sum()


_WIN = ssim_window()

try:  # scipy's C filter is ~3x faster than shifted sums; both are exact float64
    from scipy.ndimage import correlate1d as _correlate1d
except ImportError:  # pragma: no cover - scipy is optional
    _correlate1d = None


def _filter_valid(x: np.ndarray) -> np.ndarray:
    """Separable 11x11 Gaussian, "valid" region: float64 ``(N, H, W)`` -> ``(N, H-10, W-10)``."""
    n = _WIN.size
    r = n // 2
    if _correlate1d is not None:
        y = _correlate1d(x, _WIN, axis=1, mode="constant")[:, r:-r]
        return _correlate1d(y, _WIN, axis=2, mode="constant")[:, :, r:-r]
    t = torch.from_numpy(x)
    for dim in (1, 2):
        length = t.shape[dim] - n + 1
        acc = t.narrow(dim, 0, length) * float(_WIN[0])
        for k in range(1, n):
            acc.add_(t.narrow(dim, k, length), alpha=float(_WIN[k]))
        t = acc
    return t.numpy()


def _ssim_planes(fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Mean SSIM of each plane pair: ``(C, H, W)`` float64 ``[0, 255]`` -> ``(C,)``.

    Only ``sigma1^2 + sigma2^2`` enters the formula, so ``a^2 + b^2`` is filtered as one plane
    (the filter is linear): four filtered planes per channel instead of five.
    """
    stats = _filter_valid(np.concatenate([fa, fb, fa * fa + fb * fb, fa * fb], axis=0))
    mu1, mu2, e_sq, e12 = np.split(stats, 4, axis=0)
    mu12 = mu1 * mu2
    mu_sq = mu1 * mu1 + mu2 * mu2
    num = (2.0 * mu12 + _C1) * (2.0 * (e12 - mu12) + _C2)
    den = (mu_sq + _C1) * ((e_sq - mu_sq) + _C2)
    return (num / den).mean(axis=(-2, -1))


def ssim(a: np.ndarray, b: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """SSIM (original MATLAB definition) between two uint8 ``(H, W, 3)`` frames.

    With ``y_channel`` the luma planes are compared; otherwise the mean over R, G, B.
    """
    fa, fb = _prepare(a, b, crop_border, y_channel, "ssim")
    if fa.shape[1] < 11 or fa.shape[2] < 11:
        raise StvsrError(f"ssim: frames must be at least 11x11 after cropping, got {fa.shape[1:]}")
    return float(np.mean(_ssim_planes(fa, fb)))


def frame_metrics(out_u8: np.ndarray, gt_u8: np.ndarray, crop_border: int = 0) -> dict[str, float]:
    """``psnr_y``, ``ssim_y``, ``psnr_rgb``, ``ssim_rgb`` of one uint8 ``(H, W, 3)`` frame pair."""
    return {
        "psnr_y": psnr(out_u8, gt_u8, crop_border, y_channel=True),
        "ssim_y": ssim(out_u8, gt_u8, crop_border, y_channel=True),
        "psnr_rgb": psnr(out_u8, gt_u8, crop_border, y_channel=False),
        "ssim_rgb": ssim(out_u8, gt_u8, crop_border, y_channel=False),
    }


class MetricAverager:
    """Collects per-frame metrics; averages per clip, then over clips (not frame-weighted)."""

    def __init__(self) -> None:
        self._clips: dict[str, dict[int, dict[str, float]]] = {}

    def add(self, clip: str, frame_idx: int, metrics: Mapping[str, float]) -> None:
        """Record ``metrics`` of frame ``frame_idx`` of ``clip``; each frame is scored once."""
        frames = self._clips.setdefault(clip, {})
        if frame_idx in frames:
            raise StvsrError(
                f"frame {frame_idx} of clip {clip!r} was scored twice; score each frame once"
            )
        frames[int(frame_idx)] = {k: float(v) for k, v in metrics.items()}

    def __len__(self) -> int:
        return sum(len(f) for f in self._clips.values())

    def clip_means(self) -> dict[str, dict[str, float]]:
        """``{clip: {metric: mean over its frames, ..., "frames": count}}`` in insertion order."""
        result: dict[str, dict[str, float]] = {}
        for clip, frames in self._clips.items():
            keys: list[str] = []
            for m in frames.values():
                keys.extend(k for k in m if k not in keys)
            means: dict[str, float] = {}
            for k in keys:
                vals = [m[k] for m in frames.values() if k in m]
                means[k] = float(np.mean(vals))
            means["frames"] = len(frames)
            result[clip] = means
        return result

    def mean(self) -> dict[str, float]:
        """Mean of the clip means per metric, plus ``clips`` and ``frames`` counts."""
        per_clip = self.clip_means()
        keys: list[str] = []
        for m in per_clip.values():
            keys.extend(k for k in m if k != "frames" and k not in keys)
        result: dict[str, float] = {
            k: float(np.mean([m[k] for m in per_clip.values() if k in m])) for k in keys
        }
        result["clips"] = len(per_clip)
        result["frames"] = int(sum(m["frames"] for m in per_clip.values()))
        return result
