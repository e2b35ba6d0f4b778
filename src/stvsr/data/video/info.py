"""What a video holds (:class:`VideoInfo`), one decoded :class:`Frame`, and how both are read
from a container's header or from a folder of images."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from stvsr.data.images import read_image
from stvsr.data.video.colour import HDR_TRC, format_bits, input_color, is_rgb_format, tag_names


@dataclass
class VideoInfo:
    """What a video file (or frame folder) holds.

    ``num_frames`` and ``duration`` come from the header and may be missing (``None``) or wrong:
    use :func:`count_frames` for an exact count. ``duration`` is the video stream's (for Matroska
    from its ``DURATION`` tag, counted from the first frame); the whole file's, which other
    streams may lengthen, only when the header has nothing else. ``rotation`` is the
    display-matrix rotation in degrees (counter-clockwise, as FFmpeg reports it); frames are
    returned unrotated.
    Colour fields are the tags as stored (``"unknown"`` when absent); :attr:`color` gives the
    values actually used for the conversion. ``start_time`` is the first frame's time on the
    container clock (frame times count from it).
    """

    path: Path
    width: int
    height: int
    frame_rate: Fraction | None
    time_base: Fraction
    num_frames: int | None
    duration: Fraction | None
    pix_fmt: str
    bit_depth: int
    codec: str = ""
    is_folder: bool = False
    has_audio: bool = False
    audio_streams: int = 0
    subtitle_streams: int = 0
    color_range: str = "unknown"
    color_space: str = "unknown"
    color_primaries: str = "unknown"
    color_trc: str = "unknown"
    rotation: int = 0
    sample_aspect_ratio: Fraction | None = None
    start_time: Fraction = field(default_factory=Fraction)

    @property
    def is_rgb(self) -> bool:
        """True when the stored pixels are RGB (no YUV matrix involved)."""
        return is_rgb_format(self.pix_fmt)

    @property
    def is_hdr(self) -> bool:
        """True for PQ (HDR10) or HLG transfer characteristics."""
        return self.color_trc in HDR_TRC

    @property
    def color(self) -> dict[str, str]:
        """Effective ``{"range", "matrix", "primaries", "trc"}``, for ``VideoWriter(color=...)``."""
        tags = {
            "range": self.color_range,
            "matrix": self.color_space,
            "primaries": self.color_primaries,
            "trc": self.color_trc,
        }
        return input_color(tags, self.pix_fmt, self.width, self.height)


@dataclass
class Frame:
    """One decoded frame: ``rgb`` is ``(H, W, 3)`` ``uint8`` (or ``uint16``, see module doc).

    ``index`` is the frame's position in the stream (presentation order; after a seek it is
    ``round(time * frame_rate)``), ``pts`` the container timestamp (``None`` for folders) and
    ``time`` the exact time in seconds from the first frame of the stream.
    """

    index: int
    rgb: np.ndarray
    pts: int | None
    time: Fraction


def clean_rate(rate: Fraction) -> Fraction | None:
    """Snap a container's rate onto ``n`` or ``n * 1000 / 1001`` (n <= 480) when within 20 ppm
    (Matroska stores the frame period in whole nanoseconds, and its demuxer reduces the rate to
    terms of at most 30000: 48000/1001 reads back as 7001/146); ``None`` if not plausible."""
    if rate <= 0 or rate > 1000:
        return None
    for cand in (Fraction(round(rate)), Fraction(round(rate * Fraction(1001, 1000)) * 1000, 1001)):
        if 0 < cand <= 480 and abs(rate - cand) <= rate * Fraction(2, 100000):
            return cand
    return rate


def folder_info(path: Path, files: list[Path], fps: Fraction) -> VideoInfo:
    """:class:`VideoInfo` of a folder of images shown at ``fps`` (reads the first image)."""
    first = read_image(files[0], high_bit_depth=True)
    bits = 16 if first.dtype == np.uint16 else 8
    return VideoInfo(
        path=path,
        width=int(first.shape[1]),
        height=int(first.shape[0]),
        frame_rate=fps,
        time_base=1 / fps,
        num_frames=len(files),
        duration=len(files) / fps,
        pix_fmt="rgb48le" if bits == 16 else "rgb24",
        bit_depth=bits,
        codec="image",
        is_folder=True,
        color_range="pc",
        color_space="gbr",
        color_primaries="bt709",
        color_trc="iec61966-2-1",
    )


_TAG_TIME = re.compile(r"\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*")


def tag_end_time(stream: Any) -> Fraction | None:
    """The end time (seconds, container clock) in a Matroska track's ``DURATION`` tag
    (``HH:MM:SS.nnnnnnnnn``, written by FFmpeg's muxer); ``None`` without a readable one."""
    for key, value in stream.metadata.items():
        name = key.upper()
        if name == "DURATION" or name.startswith("DURATION-"):
            m = _TAG_TIME.fullmatch(str(value))
            if m:
                return int(m[1]) * 3600 + int(m[2]) * 60 + Fraction(m[3])
    return None


def container_info(path: Path, container: Any, stream: Any, first: Any | None) -> VideoInfo:
    """:class:`VideoInfo` of ``stream`` from its header and its first decoded frame."""
    ctx = stream.codec_context
    tb = stream.time_base or Fraction(1, 90000)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    rate = clean_rate(Fraction(rate)) if rate else None
    num = int(stream.frames) if stream.frames else None
    src = first if first is not None else ctx
    pix_fmt = first.format.name if first is not None else (ctx.pix_fmt or "unknown")
    # the first decoded frame defines time 0 (AVI with B-frames reports a start one tick early)
    start = first.pts if first is not None and first.pts is not None else (stream.start_time or 0)
    end = tag_end_time(stream)
    if stream.duration is not None:
        duration: Fraction | None = stream.duration * tb
    elif end is not None:  # Matroska: no stream duration, the container's covers every stream
        duration = max(Fraction(0), end - Fraction(start) * tb)
    elif container.duration is not None:
        duration = Fraction(container.duration, av.time_base)
    else:
        duration = None
    audio = len(container.streams.audio)
    tags = tag_names(src)
    return VideoInfo(
        path=path,
        width=int(src.width),
        height=int(src.height),
        frame_rate=rate,
        time_base=Fraction(tb),
        num_frames=num,
        duration=duration,
        pix_fmt=pix_fmt,
        bit_depth=format_bits(pix_fmt),
        codec=ctx.name,
        is_folder=False,
        has_audio=audio > 0,
        audio_streams=audio,
        subtitle_streams=len(container.streams.subtitles),
        color_range=tags["range"],
        color_space=tags["matrix"],
        color_primaries=tags["primaries"],
        color_trc=tags["trc"],
        rotation=int(round(first.rotation)) if first is not None else 0,
        sample_aspect_ratio=Fraction(ctx.sample_aspect_ratio) if ctx.sample_aspect_ratio else None,
        start_time=Fraction(start) * tb,
    )
