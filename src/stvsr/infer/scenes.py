"""Cheap scene-cut detection on downscaled luma.

Every input frame is reduced to a small luma thumbnail (:func:`luma_thumbnail`, about 32 × 18
block means) and consecutive thumbnails are compared (:func:`frame_distance`: the mean of the
mean absolute difference and half the L1 distance between 16-bin luma histograms, both in
[0, 1]). :func:`detect_cuts` then marks frame ``i`` as the first frame of a new shot when its
distance to frame ``i - 1`` is above an absolute floor *and* several times the median distance of
the preceding frames of the same shot (an adaptive threshold: fast motion raises the median, so
steady high differences are not taken for cuts).

The engine uses the cuts to split the stream: no model sees frames of two shots at once and no
in-between frame is blended across a cut (it repeats the previous frame instead).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["detect_cuts", "frame_distance", "luma_thumbnail"]

#: Rec. 601 luma weights (the thumbnail is only compared with itself; the matrix hardly matters).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luma_thumbnail(rgb: np.ndarray, width: int = 32) -> np.ndarray:
    """``(H, W, 3)`` uint8/uint16 RGB → ``(h, w)`` float32 luma in [0, 1], about ``width`` wide.

    Block means over a strided subsample (at most ~4 samples per block side), so the cost does
    not depend much on the frame size.
    """
    peak = 65535.0 if rgb.dtype == np.uint16 else 255.0
    h, w = rgb.shape[:2]
    bw = max(1, w // width)
    bh = max(1, h // max(1, round(width * h / w)))
    step_y, step_x = max(1, bh // 4), max(1, bw // 4)
    sub = rgb[: (h // bh) * bh : step_y, : (w // bw) * bw : step_x].astype(np.float32)
    luma = sub @ _LUMA / peak
    ny, nx = h // bh, w // bw
    ky, kx = luma.shape[0] // ny, luma.shape[1] // nx
    luma = luma[: ny * ky, : nx * kx]
    return luma.reshape(ny, ky, nx, kx).mean(axis=(1, 3))


def frame_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance in [0, 1] between two thumbnails of :func:`luma_thumbnail`."""
    mad = float(np.abs(a - b).mean())
    ha = np.histogram(a, bins=16, range=(0.0, 1.0))[0].astype(np.float64)
    hb = np.histogram(b, bins=16, range=(0.0, 1.0))[0].astype(np.float64)
    hist = 0.5 * float(np.abs(ha / max(ha.sum(), 1) - hb / max(hb.sum(), 1)).sum())
    return 0.5 * (mad + hist)


def detect_cuts(
    distances: Sequence[float],
    *,
    threshold: float = 0.12,
    ratio: float = 3.0,
    window: int = 24,
    min_shot: int = 2,
) -> list[int]:
    """Indices ``i`` where a new shot starts (``distances[i]`` compares frames ``i-1`` and ``i``).

    Args:
        distances: per-frame distances; ``distances[0]`` (no predecessor) is ignored.
        threshold: absolute floor; no cut below it (``inf`` disables detection).
        ratio: a cut also needs ``distance > ratio × median`` of the previous ``window``
            distances of the current shot (adaptive threshold).
        window: how many previous distances the median looks at.
        min_shot: shots shorter than this are not split off (flashes, single glitches).

    Returns:
        Sorted frame indices ``> 0``; frames ``[c_k, c_{k+1})`` form one shot.
    """
    cuts: list[int] = []
    shot_start = 0
    for i in range(1, len(distances)):
        d = float(distances[i])
        history = [float(x) for x in distances[max(shot_start + 1, i - window): i]]
        median = float(np.median(history)) if history else 0.0
        if d > threshold and d > ratio * median and i - shot_start >= min_shot:
            cuts.append(i)
            shot_start = i
    return cuts
