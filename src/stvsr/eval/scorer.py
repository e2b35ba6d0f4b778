"""The one scorer of evaluation: PSNR/SSIM of output frames against their HR frames.

*Facts* (``docs/evaluation.md``, :mod:`stvsr.metrics`): outputs are clamped and rounded to 8
bits (:func:`stvsr.frames.to_uint8`) before scoring; PSNR/SSIM on Y (BT.601) and on RGB, an
optional border crop on every side; averages per frame → per clip → mean of clip means, for all
frames and separately for each kind (``input``: restores an LR input; ``new``: made between
two). With ``reference_scale`` each frame is also scored as the bicubic upscale of its LR input
(PSNR-Y), the baseline curve of S-VSR results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from stvsr.eval.protocols import KINDS
from stvsr.frames import to_uint8
from stvsr.metrics import MetricAverager, frame_metrics, psnr
from stvsr.ops.resize import imresize

__all__ = ["Scorer", "bicubic_reference"]


def bicubic_reference(lr: torch.Tensor, scale: int) -> np.ndarray:
    """The 8-bit MATLAB-bicubic upscale ``(s·h, s·w, 3)`` of an LR frame ``(3, h, w)``."""
    return to_uint8(imresize(lr.unsqueeze(0), float(scale))[0])


class Scorer:
    """Scores frames and keeps the per-frame rows and the averages of every clip.

    Args:
        crop_border: pixels left out on every side before scoring.
        reference_scale: score the bicubic upscale of each frame's LR input too (S-VSR).
    """

    def __init__(self, crop_border: int = 0, reference_scale: int | None = None) -> None:
        self.crop_border = crop_border
        self.reference_scale = reference_scale
        self.all = MetricAverager()
        self.by_kind = {kind: MetricAverager() for kind in KINDS}
        self.rows: dict[str, list[dict[str, Any]]] = {}

    def score(self, clip: str, frame: int, kind: str, sr: np.ndarray, gt: np.ndarray,
              reference: np.ndarray | None = None) -> dict[str, float]:
        """Score output ``sr`` of HR frame ``frame`` (both uint8 ``(H, W, 3)``) as ``kind``;
        ``reference`` is the frame's bicubic upscale (with ``reference_scale``)."""
        m = frame_metrics(sr, gt, crop_border=self.crop_border)
        self.all.add(clip, frame, m)
        self.by_kind[kind].add(clip, frame, m)
        row: dict[str, Any] = {"frame": frame, "kind": kind, "psnr_y": m["psnr_y"],
                               "ssim_y": m["ssim_y"]}
        if reference is not None:
            row["bicubic_psnr_y"] = psnr(reference, gt, crop_border=self.crop_border,
                                         y_channel=True)
        self.rows.setdefault(clip, []).append(row)
        return m

    def finish_clip(self, clip: str, n_frames: int) -> list[dict[str, Any]]:
        """The clip's rows in frame order, after checking each of its frames was scored once."""
        rows = sorted(self.rows.get(clip, []), key=lambda r: r["frame"])
        if [r["frame"] for r in rows] != list(range(n_frames)):
            raise RuntimeError(f"clip {clip}: frames were not each scored once")
        self.rows[clip] = rows
        return rows

    def clip_means(self) -> dict[str, dict[str, Any]]:
        """``{clip: {psnr_y, ssim_y, psnr_rgb, ssim_rgb, frames, <metric>_<kind>, …,
        frames_<kind>}}``: all frames, then each kind the clip has."""
        per_kind = {kind: avg.clip_means() for kind, avg in self.by_kind.items()}
        out: dict[str, dict[str, Any]] = {}
        for name, means in self.all.clip_means().items():
            res: dict[str, Any] = dict(means)
            for kind, table in per_kind.items():
                if name in table:
                    res.update(_suffixed(table[name], kind))
                    res[f"frames_{kind}"] = table[name]["frames"]
            out[name] = res
        return out

    def mean(self) -> dict[str, Any]:
        """Means of the clip means (all frames, ``clips``, ``frames``, then per kind)."""
        mean: dict[str, Any] = dict(self.all.mean())
        mean.update(_suffixed(self.by_kind["input"].mean(), "input"))
        if len(self.by_kind["new"]):
            mean.update(_suffixed(self.by_kind["new"].mean(), "new"))
        return mean


def _suffixed(means: dict[str, float], suffix: str) -> dict[str, float]:
    """``{psnr_y: v}`` -> ``{psnr_y_<suffix>: v}``, counts left out."""
    return {f"{k}_{suffix}": v for k, v in means.items() if k not in ("frames", "clips")}
