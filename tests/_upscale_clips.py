"""Generated clips and decoding shared by the ``stvsr upscale`` end-to-end tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from stvsr.data.video import VideoReader

FAST = {"preset": "ultrafast", "progress": "none", "log": lambda s: None}


def pattern(k: int, w: int, h: int, cut: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if cut is not None and k >= cut:
        base = 255 - base[::-1]
    return np.roll(base, 2 * k, axis=1)


def scene(k: int, w: int, h: int, cut: int) -> np.ndarray:
    """Smooth content with a moving square; a different scene from frame ``cut`` on."""
    yy, xx = np.mgrid[0:h, 0:w]
    if k < cut:
        img = np.stack([40 + 100 * xx / w, 60 + 0 * xx, 80 + 60 * yy / h], axis=-1)
    else:
        img = np.stack([220 - 80 * yy / h, 200 + 0 * xx, 120 + 100 * xx / w], axis=-1)
    img[4:10, 2 + k:8 + k] = 250
    return img.astype(np.uint8)


def make_clip(path: Path, n: int, *, w: int = 32, h: int = 24, rate: Fraction = Fraction(25),
              codec: str = "libx264", pix_fmt: str = "yuv420p", audio: bool = False,
              times: list[Fraction] | None = None, tb: Fraction | None = None,
              color: dict[str, int] | None = None) -> list[np.ndarray]:
    """Write an ``n``-frame test clip; returns the RGB frames given to the encoder."""
    frames = [pattern(k, w, h) for k in range(n)]
    tb = tb or 1 / rate
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        s.time_base = tb
        s.codec_context.time_base = tb
        if codec == "libx264":
            s.options = {"preset": "ultrafast"}
        for key, val in (color or {}).items():
            setattr(s.codec_context, key, val)
        a = None
        if audio:
            a = c.add_stream("aac", rate=48000)
            a.layout = "stereo"
        for k, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            for key, val in (color or {}).items():
                setattr(f, key, val)
            t = times[k] if times is not None else k / rate
            f.pts, f.time_base = round(t / tb), tb
            c.mux(s.encode(f))
        c.mux(s.encode(None))
        if a is not None:
            total = int(n / rate * 48000) + 1024
            for i in range(0, total, 1024):
                tone = np.sin(np.arange(i, i + 1024) / 20.0).astype(np.float32)
                af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp",
                                                layout="stereo")
                af.sample_rate, af.pts = 48000, i
                c.mux(a.encode(af))
            c.mux(a.encode(None))
    return frames


def decode(path: Path) -> tuple[list[np.ndarray], list[Fraction], VideoReader]:
    r = VideoReader(path, high_bit_depth=True)
    frames, times = [], []
    for f in r:
        frames.append(f.rgb)
        times.append(f.time)
    return frames, times, r
