"""Small generated clips and checks shared by the video I/O tests (64x48 RGB, PyAV)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from stvsr.data.video import VideoWriter

H, W = 48, 64
NTSC_FILM = Fraction(24000, 1001)
NTSC_VIDEO = Fraction(30000, 1001)


def smooth(i: int, h: int = H, w: int = W) -> np.ndarray:
    """A smooth moving RGB pattern (compresses well, so lossy errors stay small)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(xx / 9 + i / 5)
    g = 128 + 100 * np.cos(yy / 7 - i / 7)
    b = 128 + 60 * np.sin((xx + yy) / 13)
    return np.stack([r, g, b], -1).round().astype(np.uint8)


def noisy(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)


def write_clip(path: Path, n: int, fps: Fraction, **kw) -> list[np.ndarray]:
    frames = [smooth(i) for i in range(n)]
    with VideoWriter(path, fps=fps, **kw) as w:
        for f in frames:
            w.write(f)
    return frames


def make_av_source(path: Path, n: int, fps: Fraction, *, audio: bool = True) -> None:
    """A clip written directly with PyAV (x264 + a 440 Hz AAC sine), no stvsr involved."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        a = None
        if audio:
            a = c.add_stream("aac", rate=48000)
            a.layout = "stereo"
        for i in range(n):
            f = av.VideoFrame.from_ndarray(smooth(i), format="rgb24")
            f.pts, f.time_base = i, 1 / fps
            c.mux(v.encode(f))
        c.mux(v.encode())
        if a is None:
            return
        total, s = int(48000 * n / fps), 0
        while s < total:
            k = min(1024, total - s)
            x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(s, s + k) / 48000)).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([x, x]), format="fltp", layout="stereo")
            af.sample_rate, af.pts = 48000, s
            c.mux(a.encode(af))
            s += k
        c.mux(a.encode())


def assert_one_line(exc: pytest.ExceptionInfo) -> None:
    msg = str(exc.value)
    assert msg and "\n" not in msg, msg
