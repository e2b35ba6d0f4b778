"""Streaming video I/O on PyAV: read any FFmpeg-readable file or a folder of images, write videos
(x264 / x265 / FFV1) or numbered PNGs, with exact timestamps, colour handling and audio copy.

Nothing here holds a whole video in memory: :class:`VideoReader` decodes one frame at a time and
:class:`VideoWriter` encodes one frame at a time (copied audio is interleaved as it goes).

Conventions
-----------
* Frames are ``np.ndarray`` of shape ``(H, W, 3)``, RGB. ``uint8`` (0-255), or ``uint16`` on the
  full 0-65535 scale (a 10-bit value ``v`` is ``v * 65535 / 1023``) for high bit depth.
* Times are :class:`fractions.Fraction` seconds counted from the first frame of the stream, taken
  from the real per-frame timestamps (never from a rounded float fps). When a container stores
  timestamps coarser than the frame period (Matroska: 1 ms) a time within half a tick of the
  constant-rate grid ``k / frame_rate`` is snapped onto it, so 24000/1001 fps survives a round trip
  through ``.mkv``.
* YUV -> RGB uses the stream's own matrix and range tags. Untagged streams follow the usual player
  convention: BT.709 for HD (width >= 1280 or height >= 720), BT.601 otherwise; limited ("tv")
  range unless the pixel format is a full-range ``yuvj*`` one. :attr:`VideoInfo.color` gives these
  effective values; pass it to :class:`VideoWriter` (``color=info.color``) to keep them.
* Range selection ``start`` / ``end`` is the half-open interval ``[start, end)`` in seconds.
* A truncated or partly corrupt file yields every frame that decodes, then stops; a
  ``RuntimeWarning`` says how many packets could not be read. A file with no decodable frame at all
  raises :class:`~stvsr.errors.VideoError` when the reader is opened.
* Odd frame sizes with chroma-subsampled output (``yuv420p``) are padded by replicating the last
  row / column (never cropped, so no picture is lost); a warning says so.
* Output is written to ``.<name>.partial<ext>`` (or a ``.<name>.partial`` folder) next to the
  target and renamed on a successful :meth:`VideoWriter.close`; on an exception inside the
  ``with`` block the partial output is deleted and an existing target is left untouched.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter

from stvsr.data.images import (
    IMAGE_EXTENSIONS,
    _check_rgb,
    list_frame_files,
    read_image,
    write_image,
)
from stvsr.errors import VideoError

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "Frame",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "concat_segments",
    "count_frames",
    "list_frame_files",
    "probe",
    "read_image",
    "write_image",
]

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".mov", ".avi"})
# NUT is written too (exact time bases, any codec): the intermediate segments of ``stvsr upscale``.
_WRITE_EXTENSIONS = VIDEO_EXTENSIONS | {".nut"}

#: Codec aliases accepted by :class:`VideoWriter`.
CODEC_ALIASES = {
    "h264": "libx264",
    "x264": "libx264",
    "avc": "libx264",
    "libx264": "libx264",
    "h265": "libx265",
    "hevc": "libx265",
    "x265": "libx265",
    "libx265": "libx265",
    "ffv1": "ffv1",
}

# FFmpeg enum values -> FFmpeg's own names (as ffprobe prints them).
_RANGE_NAMES = {0: "unknown", 1: "tv", 2: "pc"}
_MATRIX_NAMES = {
    0: "gbr",
    1: "bt709",
    2: "unknown",
    4: "fcc",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "ycgco",
    9: "bt2020nc",
    10: "bt2020c",
    11: "smpte2085",
    12: "chroma-derived-nc",
    13: "chroma-derived-c",
    14: "ictcp",
}
_PRIMARIES_NAMES = {
    1: "bt709",
    2: "unknown",
    4: "bt470m",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "film",
    9: "bt2020",
    10: "smpte428",
    11: "smpte431",
    12: "smpte432",
    22: "jedec-p22",
}
_TRC_NAMES = {
    1: "bt709",
    2: "unknown",
    4: "gamma22",
    5: "gamma28",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    9: "log100",
    10: "log316",
    11: "iec61966-2-4",
    12: "bt1361e",
    13: "iec61966-2-1",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084",
    17: "smpte428",
    18: "arib-std-b67",
}
_NAME_ALIASES = {
    "range": {"limited": "tv", "mpeg": "tv", "full": "pc", "jpeg": "pc"},
    "matrix": {"bt601": "smpte170m", "rgb": "gbr", "bt2020": "bt2020nc"},
    "primaries": {"bt601": "smpte170m"},
    "trc": {"srgb": "iec61966-2-1", "pq": "smpte2084", "hlg": "arib-std-b67"},
}
# Matrix name -> swscale colourspace used for the YUV <-> RGB conversion.
_SWS_MATRIX = {
    "bt709": Colorspace.ITU709,
    "fcc": Colorspace.FCC,
    "bt470bg": Colorspace.ITU601,
    "smpte170m": Colorspace.ITU601,
    "smpte240m": Colorspace.SMPTE240M,
    "bt2020nc": Colorspace.BT2020,
    "bt2020c": Colorspace.BT2020,
}
_SWS_RANGE = {"tv": ColorRange.MPEG, "pc": ColorRange.JPEG}
_HDR_TRC = {"smpte2084", "arib-std-b67"}
# Accurate rounding and full chroma interpolation: ~0.5 grey levels better round trips.
_SWS_FLAGS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
_MAX_BAD_PACKETS = 100


# --------------------------------------------------------------------------------------------
# Info and frames
# --------------------------------------------------------------------------------------------


@dataclass
class VideoInfo:
    """What a video file (or frame folder) holds.

    ``num_frames`` and ``duration`` come from the header and may be missing (``None``) or wrong:
    use :func:`count_frames` for an exact count. ``rotation`` is the display-matrix rotation in
    degrees (counter-clockwise, as FFmpeg reports it); frames are returned unrotated.
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
        return _is_rgb_format(self.pix_fmt)

    @property
    def is_hdr(self) -> bool:
        """True for PQ (HDR10) or HLG transfer characteristics."""
        return self.color_trc in _HDR_TRC

    @property
    def color(self) -> dict[str, str]:
        """Effective ``{"range", "matrix", "primaries", "trc"}``, for ``VideoWriter(color=...)``."""
        if self.is_rgb:
            rng, matrix = "pc", "gbr"
        else:
            rng = self.color_range
            if rng not in ("tv", "pc"):
                rng = "pc" if self.pix_fmt.startswith("yuvj") else "tv"
            matrix = self.color_space
            if matrix in ("unknown", "reserved", "gbr"):
                matrix = _guess_matrix(self.width, self.height)
        return {
            "range": rng,
            "matrix": matrix,
            "primaries": self.color_primaries,
            "trc": self.color_trc,
        }


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


def _guess_matrix(width: int, height: int) -> str:
    if width >= 1280 or height >= 720:
        return "bt709"
    return "bt470bg" if height == 576 else "smpte170m"


def _clean_rate(rate: Fraction) -> Fraction | None:
    """Snap a container's rate onto ``n`` or ``n * 1000 / 1001`` (n <= 480) when within 20 ppm
    (Matroska stores the frame period in whole nanoseconds); ``None`` if not plausible."""
    if rate <= 0 or rate > 1000:
        return None
    for cand in (Fraction(round(rate)), Fraction(round(rate * Fraction(1001, 1000)) * 1000, 1001)):
        if 0 < cand <= 480 and abs(rate - cand) <= rate * Fraction(2, 100000):
            return cand
    return rate


def _is_rgb_format(pix_fmt: str) -> bool:
    try:
        return bool(av.VideoFormat(pix_fmt).is_rgb)
    except (ValueError, av.FFmpegError):
        return pix_fmt.startswith(("rgb", "bgr", "gbr", "argb", "abgr"))


def _format_bits(pix_fmt: str) -> int:
    try:
        return int(av.VideoFormat(pix_fmt).components[0].bits)
    except (ValueError, IndexError, av.FFmpegError):
        return 8


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) if isinstance(exc, av.FFmpegError) else None
    text = str(text or exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _to_fraction(value: float | int | Fraction | None) -> Fraction | None:
    if value is None:
        return None
    return value if isinstance(value, Fraction) else Fraction(value)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _open_input(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        raise VideoError(
            f"cannot open {path} as a video ({_one_line(exc)}); is it a complete, readable video?"
        ) from None
    except (OSError, UnicodeError) as exc:
        raise VideoError(f"cannot open {path}: {_one_line(exc)}") from None


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        raise VideoError(f"{path} has no video stream (give a video file or a folder of images)")
    return container.streams.video[0]


def _folder_info(path: Path, files: list[Path], fps: Fraction) -> VideoInfo:
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


def _container_info(path: Path, container: Any, stream: Any, first: Any | None) -> VideoInfo:
    ctx = stream.codec_context
    tb = stream.time_base or Fraction(1, 90000)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    rate = _clean_rate(Fraction(rate)) if rate else None
    num = int(stream.frames) if stream.frames else None
    if stream.duration is not None:
        duration: Fraction | None = stream.duration * tb
    elif container.duration is not None:
        duration = Fraction(container.duration, av.time_base)
    else:
        duration = None
    src = first if first is not None else ctx
    pix_fmt = first.format.name if first is not None else (ctx.pix_fmt or "unknown")
    # the first decoded frame defines time 0 (AVI with B-frames reports a start one tick early)
    start = first.pts if first is not None and first.pts is not None else (stream.start_time or 0)
    audio = len(container.streams.audio)
    return VideoInfo(
        path=path,
        width=int(src.width),
        height=int(src.height),
        frame_rate=rate,
        time_base=Fraction(tb),
        num_frames=num,
        duration=duration,
        pix_fmt=pix_fmt,
        bit_depth=_format_bits(pix_fmt),
        codec=ctx.name,
        is_folder=False,
        has_audio=audio > 0,
        audio_streams=audio,
        subtitle_streams=len(container.streams.subtitles),
        color_range=_RANGE_NAMES.get(int(src.color_range), "unknown"),
        color_space=_MATRIX_NAMES.get(int(src.colorspace), "unknown"),
        color_primaries=_PRIMARIES_NAMES.get(int(src.color_primaries), "unknown"),
        color_trc=_TRC_NAMES.get(int(src.color_trc), "unknown"),
        rotation=int(round(first.rotation)) if first is not None else 0,
        sample_aspect_ratio=Fraction(ctx.sample_aspect_ratio) if ctx.sample_aspect_ratio else None,
        start_time=Fraction(start) * tb,
    )


def _decode_frames(container: Any, stream: Any, path: Path) -> Iterator[Any]:
    """Decoded ``av.VideoFrame`` s of ``stream``; stops (with a warning) at unreadable data."""
    bad = 0
    demux = container.demux(stream)
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            break
        except av.FFmpegError as exc:
            warnings.warn(
                f"{path}: stopped reading at damaged data ({_one_line(exc)})",
                RuntimeWarning,
                stacklevel=3,
            )
            break
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            bad += 1
            if bad == 1:
                warnings.warn(
                    f"{path}: skipping undecodable packet(s) ({_one_line(exc)})",
                    RuntimeWarning,
                    stacklevel=3,
                )
            if bad > _MAX_BAD_PACKETS:
                raise VideoError(
                    f"{path} is too damaged to decode (more than {_MAX_BAD_PACKETS} bad packets)"
                ) from None
            continue
        yield from frames


class VideoReader:
    """Stream the frames of a video file or an image folder; iterate to get :class:`Frame` s.

    ``start`` / ``end`` (seconds, ``[start, end)``) select a range; a file is then sought to the
    keyframe before ``start``. ``high_bit_depth`` returns ``uint16`` frames for sources of more
    than 8 bits. The reader can be iterated several times; each pass re-opens the file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps_for_folders: Fraction | int | float = Fraction(25),
        high_bit_depth: bool = False,
        start: float | Fraction | None = None,
        end: float | Fraction | None = None,
    ) -> None:
        self.path = Path(path)
        self.high_bit_depth = high_bit_depth
        self.start = _to_fraction(start)
        self.end = _to_fraction(end)
        if self.start is not None and self.start < 0:
            raise VideoError(f"start must be >= 0 seconds, got {float(self.start)}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise VideoError(
                f"end ({float(self.end)} s) must be after start ({float(self.start)} s)"
            )
        self._container: Any = None
        self._files: list[Path] | None = None
        if not self.path.exists():
            raise VideoError(f"input not found: {self.path} (check the path)")
        if self.path.is_dir():
            fps = _to_fraction(fps_for_folders)
            if fps is None or fps <= 0:
                raise VideoError("fps_for_folders must be a positive frame rate")
            self._files = list_frame_files(self.path)
            self.info = _folder_info(self.path, self._files, fps)
            return
        if self.path.stat().st_size == 0:
            raise VideoError(f"{self.path} is an empty file (0 bytes); give a complete video")
        container = _open_input(self.path)
        try:
            stream = _video_stream(container, self.path)
            first = next(iter(_decode_frames(container, stream, self.path)), None)
            if first is None:
                raise VideoError(
                    f"{self.path} contains no decodable video frame (corrupt or truncated file?)"
                )
            self.info = _container_info(self.path, container, stream, first)
            self._t0 = first.pts if first.pts is not None else (stream.start_time or 0)
            # AVI has no presentation timestamps (FFmpeg guesses them, wrongly after B-frames)
            self._by_index = "avi" in container.format.name.split(",") and bool(
                self.info.frame_rate
            )
        finally:
            container.close()
        self._color = self.info.color
        self._sws = VideoReformatter()
        self._warned_pts = False
        if self.info.is_hdr:
            warnings.warn(
                f"{self.path} is HDR ({self.info.color_trc}); frames are converted to "
                "RGB without tone mapping",
                RuntimeWarning,
                stacklevel=2,
            )

    # ---- context manager / iteration ----------------------------------------------------
    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file opened by an ongoing iteration (if any)."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def __iter__(self) -> Iterator[Frame]:
        if self._files is not None:
            return self._iter_folder()
        return self._iter_container()

    def __len__(self) -> int:
        """Frame count from the header (exact for folders); see :func:`count_frames`."""
        if self.info.num_frames is None:
            raise TypeError("frame count unknown from the header; use count_frames(path)")
        return self.info.num_frames

    # ---- folders -------------------------------------------------------------------------
    def _iter_folder(self) -> Iterator[Frame]:
        assert self._files is not None
        fps = self.info.frame_rate
        assert fps is not None
        eps = Fraction(1, 1_000_000)  # float slack in start/end
        for i, f in enumerate(self._files):
            t = Fraction(i) / fps
            if self.start is not None and t < self.start - eps:
                continue
            if self.end is not None and t >= self.end - eps:
                break
            rgb = read_image(f, high_bit_depth=self.high_bit_depth)
            if rgb.shape[:2] != (self.info.height, self.info.width):
                raise VideoError(
                    f"{f.name} is {rgb.shape[1]}x{rgb.shape[0]} but the first frame "
                    f"is {self.info.width}x{self.info.height}; frames must match"
                )
            yield Frame(index=i, rgb=rgb, pts=None, time=t)

    # ---- files ---------------------------------------------------------------------------
    def _convert(self, frame: Any) -> np.ndarray:
        info = self.info
        fmt = "rgb48le" if (self.high_bit_depth and info.bit_depth > 8) else "rgb24"
        if _is_rgb_format(frame.format.name):
            return frame.to_ndarray(format=fmt)
        col = self._color
        return self._sws.reformat(
            frame,
            format=fmt,
            src_colorspace=_SWS_MATRIX.get(col["matrix"]),
            src_color_range=_SWS_RANGE[col["range"]],
            interpolation=_SWS_FLAGS,
        ).to_ndarray()

    def _time(self, pts: int | None, previous: Fraction | None, index: int) -> Fraction:
        info = self.info
        rate = info.frame_rate
        if self._by_index and rate:
            return Fraction(index) / rate
        step = 1 / rate if rate else info.time_base
        if pts is None:
            return Fraction(0) if previous is None else previous + step
        t = (pts - self._t0) * info.time_base
        if previous is not None and t <= previous:
            if not self._warned_pts:
                self._warned_pts = True
                warnings.warn(
                    f"{self.path}: timestamps out of order; using the frame rate",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return previous + step
        if rate:
            grid = Fraction(round(t * rate)) / rate
            if abs(grid - t) <= info.time_base / 2:
                t = grid
        return t

    def _check_complete(self, last: Fraction | None) -> None:
        """Warn when decoding ended well before the duration the header announces."""
        info = self.info
        if info.duration is None or last is None or self.end is not None:
            return
        period = 1 / info.frame_rate if info.frame_rate else Fraction(0)
        missing = info.duration - (last + period)
        if missing > max(2 * period, info.duration / 20):
            warnings.warn(
                f"{self.path}: video ended at {float(last + period):.3f} s but the "
                f"header says {float(info.duration):.3f} s (truncated file?)",
                RuntimeWarning,
                stacklevel=3,
            )

    def _iter_container(self) -> Iterator[Frame]:
        # frame-counted AVI times need every frame from the start: no seeking there
        seek = self.start is not None and self.start > 0 and not self._by_index
        eps = min(self.info.time_base / 2, Fraction(1, 1_000_000))  # float slack in start/end
        try:
            for attempt in range(2):
                container = _open_input(self.path)
                self.close()
                self._container = container
                stream = _video_stream(container, self.path)
                stream.thread_type = "AUTO"
                sought = seek and attempt == 0
                if sought:
                    assert self.start is not None
                    target = self._t0 + math.floor(self.start / self.info.time_base)
                    try:
                        container.seek(target, stream=stream, backward=True)
                    except av.FFmpegError:
                        continue  # not seekable: decode from the start
                index = -1
                previous: Fraction | None = None
                first = True
                for frame in _decode_frames(container, stream, self.path):
                    index += 1
                    t = self._time(frame.pts, previous, index)
                    previous = t
                    if first and sought and self.start is not None and t > self.start + eps:
                        break  # the seek landed after start: restart from the beginning
                    first = False
                    if self.start is not None and t < self.start - eps:
                        continue
                    if self.end is not None and t >= self.end - eps:
                        return
                    idx = (
                        int(round(t * self.info.frame_rate))
                        if (sought and self.info.frame_rate)
                        else index
                    )
                    yield Frame(index=idx, rgb=self._convert(frame), pts=frame.pts, time=t)
                else:
                    self._check_complete(previous)
                    return
        finally:
            self.close()


def probe(path: str | Path, *, fps_for_folders: Fraction | int | float = Fraction(25)) -> VideoInfo:
    """:class:`VideoInfo` of a video file or an image folder (decodes one frame)."""
    return VideoReader(path, fps_for_folders=fps_for_folders).info


def count_frames(path: str | Path, *, decode: bool = False) -> int:
    """Exact number of video frames, ignoring the header's count.

    By default video packets are counted (fast; exact for MP4 / MKV / MOV and the codecs written
    here); ``decode=True`` decodes every frame (slow; exact for any input).
    """
    path = Path(path)
    if path.is_dir():
        return len(list_frame_files(path))
    reader = VideoReader(path)  # validates the file
    container = _open_input(reader.path)
    try:
        stream = _video_stream(container, path)
        n = 0
        if decode:
            stream.thread_type = "AUTO"
            for _ in _decode_frames(container, stream, path):
                n += 1
            return n
        try:
            for packet in container.demux(stream):
                if packet.size > 0:
                    n += 1
        except av.FFmpegError as exc:
            warnings.warn(
                f"{path}: stopped counting at damaged data ({_one_line(exc)})",
                RuntimeWarning,
                stacklevel=2,
            )
        return n
    finally:
        container.close()


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _norm_name(value: str | int, names: dict[int, str], what: str) -> str:
    if isinstance(value, int):
        if value not in names:
            raise VideoError(f"unknown colour {what} value {value}")
        return names[value]
    name = str(value).lower()
    if name not in names.values():
        name = _NAME_ALIASES.get(what, {}).get(name, name)
    if name not in names.values():
        raise VideoError(
            f"unknown colour {what} {value!r}; use one of {', '.join(sorted(set(names.values())))}"
        )
    return name


def _code(name: str, names: dict[int, str]) -> int:
    return next(k for k, v in names.items() if v == name)


def _partial_path(target: Path) -> Path:
    return target.with_name(f".{target.stem}.partial{target.suffix}")


class VideoWriter:
    """Encode RGB frames to a video file, or to numbered PNGs (``%08d.png``, from 0) when
    ``path`` has no video extension (``.mp4 .mkv .mov .avi``).

    ``codec``: ``h264``/``libx264``, ``h265``/``hevc``/``libx265`` or ``ffv1``. ``pix_fmt``
    defaults to ``yuv420p`` for x264 / x265 (``yuv420p10le`` when ``uint16`` frames arrive) and
    ``bgr0`` for FFV1 (``gbrp16le`` for ``uint16``). ``lossless`` uses QP 0 for x264
    (``yuv444p``: lossless in YUV) and lossless x265 in ``gbrp`` (bit-exact RGB); FFV1 is always
    lossless. ``color`` sets range / matrix / primaries / trc (FFmpeg names, e.g.
    ``VideoInfo.color``); the RGB -> YUV conversion uses that matrix and range (default BT.709,
    limited range). Frames without ``time`` follow the previous one by ``1 / fps``.
    ``audio_from`` copies (remuxes) the audio and subtitle streams of another file, shifted so that
    its first video frame is time 0; ``audio_range = (start, end)`` (seconds on that same clock,
    as :class:`VideoReader` times; ``end`` may be ``None``) keeps that span only, moved to 0;
    streams the container cannot hold are skipped with a warning. ``time_base`` defaults to
    ``1 / lcm(fps numerator, 90000)``. ``rotation`` (degrees, counter-clockwise) is stored as a
    display matrix; ``sample_aspect_ratio`` (non-square pixels) is stored in the stream.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: Fraction | int | float | None,
        codec: str = "libx264",
        crf: int = 18,
        preset: str = "medium",
        pix_fmt: str | None = None,
        lossless: bool = False,
        audio_from: str | Path | None = None,
        audio_range: tuple[float | Fraction, float | Fraction | None] | None = None,
        color: dict[str, str | int] | None = None,
        time_base: Fraction | None = None,
        rotation: int = 0,
        options: dict[str, str] | None = None,
        sample_aspect_ratio: Fraction | None = None,
    ) -> None:
        self.path = Path(path)
        self.sample_aspect_ratio = sample_aspect_ratio
        self.fps = _to_fraction(fps)
        if self.fps is not None and self.fps <= 0:
            raise VideoError(f"fps must be positive, got {fps}")
        suffix = self.path.suffix.lower()
        if suffix in _WRITE_EXTENSIONS:
            self.mode = "video"
        elif suffix == "" or self.path.is_dir():
            self.mode = "folder"
        else:
            raise VideoError(
                f"unsupported output {self.path.name!r}: use a video extension "
                f"({' '.join(sorted(VIDEO_EXTENSIONS))}) or a folder name for PNGs"
            )
        key = codec.lower()
        if key not in CODEC_ALIASES:
            raise VideoError(f"unsupported codec {codec!r}; use h264, h265 or ffv1")
        self.codec = CODEC_ALIASES[key]
        self.crf, self.preset, self.pix_fmt, self.lossless = crf, preset, pix_fmt, lossless
        self.options = dict(options or {})
        self.rotation = rotation
        self.time_base = _to_fraction(time_base)
        self.color = self._parse_color(color)
        self.audio_from = Path(audio_from) if audio_from is not None else None
        if self.audio_from is not None and not self.audio_from.exists():
            raise VideoError(f"audio source not found: {self.audio_from}")
        self.audio_range = (
            (_to_fraction(audio_range[0]) or Fraction(0), _to_fraction(audio_range[1]))
            if audio_range is not None
            else None
        )
        parent = self.path.absolute().parent
        if not parent.is_dir():
            raise VideoError(f"output folder does not exist: {parent} (create it first)")
        try:  # a real write probe: os.access says yes to root on read-only mounts
            with tempfile.NamedTemporaryFile(dir=parent, prefix=".stvsr-probe-"):
                pass
        except OSError as exc:
            raise VideoError(
                f"output folder is not writable: {parent} "
                f"({_one_line(exc)}); choose another output path"
            ) from None
        self.partial = (
            self.path.with_name(f".{self.path.name}.partial")
            if self.mode == "folder"
            else _partial_path(self.path)
        )
        self.frames_written = 0
        self.padded = (0, 0)
        self.closed = False
        self._size: tuple[int, int] | None = None
        self._dtype: Any = None
        self._last_pts: int | None = None
        self._last_time: Fraction | None = None
        self._container: Any = None
        self._stream: Any = None
        self._audio_in: Any = None
        self._audio_iter: Iterator[Any] | None = None
        self._audio_pending: Any = None
        self._audio_map: dict[int, tuple[Any, int]] = {}
        self._sws = VideoReformatter()

    @staticmethod
    def _parse_color(color: dict[str, str | int] | None) -> dict[str, str]:
        color = dict(color or {})
        unknown = set(color) - {"range", "matrix", "space", "colorspace", "primaries", "trc"}
        if unknown:
            raise VideoError(
                f"unknown colour keys {sorted(unknown)}; use range, matrix, primaries, trc"
            )
        out: dict[str, str] = {}
        if "range" in color:
            out["range"] = _norm_name(color["range"], _RANGE_NAMES, "range")
        for key in ("matrix", "space", "colorspace"):
            if key in color:
                out["matrix"] = _norm_name(color[key], _MATRIX_NAMES, "matrix")
        if "primaries" in color:
            out["primaries"] = _norm_name(color["primaries"], _PRIMARIES_NAMES, "primaries")
        if "trc" in color:
            out["trc"] = _norm_name(color["trc"], _TRC_NAMES, "trc")
        return out

    # ---- context manager -----------------------------------------------------------------
    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:  # never leave a partial file behind
        if not getattr(self, "closed", True):
            try:
                self.abort()
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass

    # ---- writing -------------------------------------------------------------------------
    def write(self, rgb: np.ndarray, time: Fraction | float | None = None) -> None:
        """Append one ``(H, W, 3)`` RGB frame (``uint8`` or ``uint16``) shown at ``time`` s."""
        if self.closed:
            raise VideoError(f"writer for {self.path} is already closed")
        rgb = _check_rgb(rgb)
        t = self._next_time(_to_fraction(time))
        if self._size is None:
            self._size = (rgb.shape[0], rgb.shape[1])
            self._dtype = rgb.dtype
            self._open(rgb)
        elif (rgb.shape[0], rgb.shape[1]) != self._size:
            raise VideoError(
                f"frame {self.frames_written} is {rgb.shape[1]}x{rgb.shape[0]}, "
                f"but the video is {self._size[1]}x{self._size[0]}"
            )
        try:
            if self.mode == "folder":
                write_image(self.partial / f"{self.frames_written:08d}.png", rgb)
            else:
                self._encode(rgb, t)
        except VideoError:
            self.abort()
            raise
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise VideoError(f"cannot write {self.path}: {_one_line(exc)}") from None
        self._last_time = t
        self.frames_written += 1

    def _next_time(self, time: Fraction | None) -> Fraction:
        if time is None:
            if self._last_time is None:
                return Fraction(0)
            if self.fps is None:
                raise VideoError("fps is unknown: give VideoWriter(fps=...) or a time per frame")
            return self._last_time + 1 / self.fps
        if self._last_time is not None and time <= self._last_time:
            raise VideoError(
                f"frame times must increase: {float(time)} s after {float(self._last_time)} s"
            )
        return time

    def _open(self, rgb: np.ndarray) -> None:
        if self.mode == "folder":
            if self.audio_from is not None:
                warnings.warn(
                    "PNG frame output has no audio; audio_from is ignored",
                    RuntimeWarning,
                    stacklevel=3,
                )
            try:
                if self.partial.exists():
                    shutil.rmtree(self.partial)
                self.partial.mkdir()
            except OSError as exc:
                raise VideoError(f"cannot create {self.partial}: {_one_line(exc)}") from None
            return
        high = rgb.dtype == np.uint16
        pix_fmt = self.pix_fmt or self._default_pix_fmt(high)
        try:
            fmt = av.VideoFormat(pix_fmt)
        except (ValueError, av.FFmpegError):
            raise VideoError(f"unknown pixel format {pix_fmt!r}") from None
        codec = av.Codec(self.codec, "w")
        allowed = {f.name for f in (codec.video_formats or [])}
        if allowed and pix_fmt not in allowed:
            raise VideoError(
                f"{self.codec} cannot encode {pix_fmt}; use one of {', '.join(sorted(allowed))}"
            )
        self._pix_fmt = pix_fmt
        self._rgb_out = bool(fmt.is_rgb)
        h, w = rgb.shape[:2]
        ah, aw = self._alignment(pix_fmt)
        ph, pw = (-h) % ah, (-w) % aw
        if ph or pw:
            warnings.warn(
                f"{pix_fmt} needs sizes divisible by {aw}x{ah}: padding {w}x{h} to "
                f"{w + pw}x{h + ph} by repeating the last column/row",
                RuntimeWarning,
                stacklevel=3,
            )
        self.padded = (ph, pw)

        def add_stream(container: Any, fps: Fraction, tb: Fraction) -> Any:
            if self.codec not in container.supported_codecs:
                raise VideoError(
                    f"{self.codec} cannot be stored in {self.path.suffix}; "
                    "use .mkv (FFV1 needs .mkv or .avi)"
                )
            stream = container.add_stream(self.codec, rate=fps)
            stream.width, stream.height = w + pw, h + ph
            stream.pix_fmt = pix_fmt
            stream.time_base = tb
            stream.codec_context.time_base = tb
            stream.options = self._codec_options()
            self._set_color_tags(stream.codec_context)
            if self.sample_aspect_ratio and self.sample_aspect_ratio != 1:
                stream.codec_context.sample_aspect_ratio = self.sample_aspect_ratio
            return stream

        self._open_container(add_stream)

    def _open_container(self, add_stream: Any) -> None:
        """Open the partial file; ``add_stream(container, fps, time_base)`` adds the video stream;
        then the tags every output gets (hvc1, rotation) and the copied audio/subtitle streams."""
        fps = self.fps or Fraction(25)
        if self.path.suffix.lower() == ".avi":
            tb = 1 / fps  # AVI counts frames: constant rate only
        else:
            tb = self.time_base or Fraction(1, math.lcm(fps.numerator, 90000))
        self._tb = tb
        try:
            container = av.open(str(self.partial), mode="w")
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(f"cannot create {self.path}: {_one_line(exc)}") from None
        self._container = container
        try:
            stream = add_stream(container, fps, tb)
            if self.codec == "libx265" and self.path.suffix.lower() in (".mp4", ".mov"):
                stream.codec_tag = "hvc1"
            if self.rotation:
                stream.set_display_rotation(self.rotation)
            self._stream = stream
            if self.audio_from is not None:
                self._open_audio(container)
        except VideoError:
            self.abort()
            raise
        except (av.FFmpegError, ValueError, OSError) as exc:
            self.abort()
            raise VideoError(f"cannot set up {self.path}: {_one_line(exc)}") from None

    def _default_pix_fmt(self, high: bool) -> str:
        if self.codec == "ffv1":
            return "gbrp16le" if high else "bgr0"
        if self.lossless:
            if self.codec == "libx265":
                return "gbrp10le" if high else "gbrp"
            return "yuv444p10le" if high else "yuv444p"
        return "yuv420p10le" if high else "yuv420p"

    @staticmethod
    def _alignment(pix_fmt: str) -> tuple[int, int]:
        fmt = av.VideoFormat(pix_fmt, 64, 64)
        if fmt.is_rgb or len(fmt.components) < 3:
            return 1, 1
        c = fmt.components[1]
        return max(1, 64 // max(1, c.height)), max(1, 64 // max(1, c.width))

    def _codec_options(self) -> dict[str, str]:
        opts: dict[str, str] = {}
        if self.codec == "libx264":
            opts["preset"] = self.preset
            if self.lossless:
                opts["qp"] = "0"
            else:
                opts["crf"] = str(self.crf)
        elif self.codec == "libx265":
            opts["preset"] = self.preset
            params = ["log-level=error"]
            if self.lossless:
                params.append("lossless=1")
            else:
                opts["crf"] = str(self.crf)
            opts["x265-params"] = ":".join(params)
        elif self.codec == "ffv1":
            opts.update({"level": "3", "slicecrc": "1"})
        if self.path.suffix.lower() == ".avi" and self.codec != "ffv1":
            opts["bf"] = "0"  # AVI cannot store the reordering that B-frames need
        opts.update(self.options)
        return opts

    def _effective_color(self) -> dict[str, str]:
        col = self.color
        if self._rgb_out:
            rng, matrix = "pc", "gbr"
        else:
            rng = "pc" if self._pix_fmt.startswith("yuvj") else col.get("range", "tv")
            rng = rng if rng in ("tv", "pc") else "tv"
            matrix = col.get("matrix", "bt709")
            if matrix in ("unknown", "gbr"):
                assert self._size is not None
                matrix = _guess_matrix(self._size[1], self._size[0])
        return {
            "range": rng,
            "matrix": matrix,
            "primaries": col.get("primaries", "bt709"),
            "trc": col.get("trc", "bt709"),
        }

    def _set_color_tags(self, ctx: Any) -> None:
        col = self._effective_color()
        self._col = col
        ctx.color_range = _code(col["range"], _RANGE_NAMES)
        ctx.colorspace = _code(col["matrix"], _MATRIX_NAMES)
        ctx.color_primaries = _code(col["primaries"], _PRIMARIES_NAMES)
        ctx.color_trc = _code(col["trc"], _TRC_NAMES)

    def _encode(self, rgb: np.ndarray, t: Fraction) -> None:
        ph, pw = self.padded
        if ph or pw:
            rgb = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")
        src = av.VideoFrame.from_ndarray(
            rgb, format="rgb48le" if rgb.dtype == np.uint16 else "rgb24"
        )
        col = self._col
        if self._rgb_out:
            frame = src.reformat(format=self._pix_fmt)
        else:
            frame = self._sws.reformat(
                src,
                format=self._pix_fmt,
                dst_colorspace=_SWS_MATRIX.get(col["matrix"]),
                dst_color_range=_SWS_RANGE[col["range"]],
                interpolation=_SWS_FLAGS,
            )
        frame.color_range = _code(col["range"], _RANGE_NAMES)
        frame.colorspace = _code(col["matrix"], _MATRIX_NAMES)
        frame.color_primaries = _code(col["primaries"], _PRIMARIES_NAMES)
        frame.color_trc = _code(col["trc"], _TRC_NAMES)
        pts = round(t / self._tb)
        if self.path.suffix.lower() == ".avi" and pts * self._tb != t:
            raise VideoError(
                f"AVI stores a constant frame rate only; frame time {float(t)} s is "
                f"not a multiple of 1/{self.fps}: use .mkv or .mp4"
            )
        if self._last_pts is not None and pts <= self._last_pts:
            raise VideoError(
                f"frame time {float(t)} s is not representable after the previous "
                f"frame with time_base {self._tb}; pass a finer time_base"
            )
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = self._tb
        self._pump_audio(t)
        self._container.mux(self._stream.encode(frame))

    # ---- audio copy ----------------------------------------------------------------------
    def _open_audio(self, container: Any) -> None:
        assert self.audio_from is not None
        try:
            src = av.open(str(self.audio_from))
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(
                f"cannot open audio source {self.audio_from}: {_one_line(exc)}"
            ) from None
        self._audio_in = src
        ref = Fraction(0)
        if src.streams.video:  # time 0 of the output is the source's first video frame
            ref = VideoReader(self.audio_from).info.start_time
        elif src.start_time is not None:
            ref = Fraction(src.start_time, av.time_base)
        if self.audio_range is not None:
            ref += self.audio_range[0]
        self._audio_ref = ref
        supported = container.supported_codecs
        chosen = []
        for s in list(src.streams.audio) + list(src.streams.subtitles):
            name = s.codec_context.name if s.codec_context is not None else s.codec.name
            if name not in supported:
                warnings.warn(
                    f"{s.type} stream {s.index} ({name}) cannot be stored in "
                    f"{self.path.suffix}; skipped (use .mkv to keep it)",
                    RuntimeWarning,
                    stacklevel=4,
                )
                continue
            try:
                out = container.add_stream_from_template(s)
            except (av.FFmpegError, ValueError) as exc:
                warnings.warn(
                    f"{s.type} stream {s.index} ({name}) skipped: {_one_line(exc)}",
                    RuntimeWarning,
                    stacklevel=4,
                )
                continue
            self._audio_map[s.index] = (out, int(math.floor(ref / s.time_base)))
            chosen.append(s)
        if chosen:
            self._audio_iter = src.demux(*chosen)
        else:
            src.close()
            self._audio_in = None

    def _pump_audio(self, until: Fraction | None) -> None:
        """Mux copied packets whose time is at most ``until`` (all of them for ``None``)."""
        if self._audio_iter is None:
            return
        end = None
        if self.audio_range is not None and self.audio_range[1] is not None:
            end = self.audio_range[1] - self.audio_range[0]
        while True:
            pkt = self._audio_pending
            if pkt is None:
                try:
                    pkt = next(self._audio_iter)
                except (StopIteration, av.FFmpegError):
                    self._audio_iter = None
                    return
                if pkt.dts is None or pkt.size == 0 or pkt.stream.index not in self._audio_map:
                    continue
                out, offset = self._audio_map[pkt.stream.index]
                pkt.pts = pkt.pts - offset if pkt.pts is not None else None
                pkt.dts = pkt.dts - offset
                t = (pkt.pts if pkt.pts is not None else pkt.dts) * pkt.time_base
                if t + (pkt.duration or 0) * pkt.time_base < 0:
                    continue  # ends before the video starts (a packet ending at 0 is pre-roll)
                if end is not None and t >= end:
                    continue
                pkt.stream = out
                self._audio_pending = pkt
            t = pkt.dts * pkt.time_base
            if until is not None and t > until:
                return
            self._audio_pending = None
            self._container.mux(pkt)

    # ---- finishing -----------------------------------------------------------------------
    def close(self) -> None:
        """Flush, finish the file and move it onto the target path (atomic rename)."""
        if self.closed:
            return
        if self.frames_written == 0:
            self.abort()
            raise VideoError(f"no frames were written to {self.path}; nothing saved")
        try:
            if self.mode == "video":
                self._flush_video()
                self._pump_audio(None)
                self._container.close()
                self._container = None
                if self._audio_in is not None:
                    self._audio_in.close()
                    self._audio_in = None
                os.replace(self.partial, self.path)
            else:
                self._replace_folder()
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise VideoError(f"cannot finish {self.path}: {_one_line(exc)}") from None
        self.closed = True

    def _flush_video(self) -> None:
        """Drain the encoder's delayed packets into the container."""
        self._container.mux(self._stream.encode(None))

    def _replace_folder(self) -> None:
        old = None
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(self.path, old)
        os.replace(self.partial, self.path)
        if old is not None:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)

    def abort(self) -> None:
        """Stop writing and delete the partial output; an existing target is left untouched."""
        self.closed = True
        for attr in ("_container", "_audio_in"):
            obj = getattr(self, attr, None)
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # noqa: BLE001 - already failing; cleanup must go on
                    pass
                setattr(self, attr, None)
        self._audio_iter = None
        partial = getattr(self, "partial", None)
        if partial is not None and partial.exists():
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            else:
                partial.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Concatenating encoded segments
# --------------------------------------------------------------------------------------------

_ENCODER_OF = {"h264": "libx264", "hevc": "libx265", "ffv1": "ffv1"}


class _SegmentMuxer(VideoWriter):
    """A :class:`VideoWriter` that muxes already encoded video packets instead of frames."""

    def open_like(self, template: Any) -> None:
        def add_stream(container: Any, fps: Fraction, tb: Fraction) -> Any:
            stream = container.add_stream_from_template(template)
            stream.time_base = tb
            stream.codec_context.framerate = fps  # the segment container's own rate is bogus
            return stream

        self._open_container(add_stream)

    def mux_packet(self, packet: Any, time: Fraction, dts_time: Fraction) -> None:
        """Mux one video packet shown at ``time`` and decoded at ``dts_time`` (seconds)."""
        self._pump_audio(time)
        packet.stream = self._stream
        packet.time_base = self._tb
        packet.pts = round(time / self._tb)
        packet.dts = round(dts_time / self._tb)
        packet.duration = max(1, round(1 / ((self.fps or Fraction(25)) * self._tb)))
        self._container.mux(packet)
        self.frames_written += 1

    def _flush_video(self) -> None:
        """Nothing to drain: packets arrive already encoded."""


def _packet_ranks(path: Path) -> list[int]:
    """Presentation rank of every video packet of ``path``, in decode order."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            pts = [p.pts for p in container.demux(stream) if p.size > 0]
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise VideoError(
            f"segment {path} is unreadable ({_one_line(exc)}); delete it and run again"
        ) from None
    if any(p is None for p in pts):
        raise VideoError(f"segment {path} has packets without timestamps; delete it")
    order = {p: r for r, p in enumerate(sorted(pts))}
    if len(order) != len(pts):
        raise VideoError(f"segment {path} has duplicate timestamps; delete it and run again")
    return [order[p] for p in pts]


def concat_segments(
    segments: list[tuple[Path, list[Fraction]]],
    path: str | Path,
    *,
    fps: Fraction,
    time_base: Fraction | None = None,
    audio_from: str | Path | None = None,
    audio_range: tuple[float | Fraction, float | Fraction | None] | None = None,
    rotation: int = 0,
    progress: Any = None,
) -> int:
    """Join encoded segments (same codec and settings, e.g. ``.nut`` files written by
    :class:`VideoWriter`) into ``path`` by remuxing their packets, without re-encoding.

    ``segments`` pairs each file with the exact times (seconds) of its frames, in presentation
    order; every packet gets its time from that list, so timestamps are exact whatever the
    segment container stored. Decode timestamps follow the presentation times delayed by the
    largest reordering of any segment, which keeps them increasing across the joins. Audio and
    subtitles of ``audio_from`` are copied as in :class:`VideoWriter`. ``progress(n)`` is called
    after every packet. The output appears atomically; returns the number of frames.
    """
    if not segments:
        raise VideoError("nothing to join: no segments")
    ranks = []
    for seg, times in segments:
        r = _packet_ranks(seg)
        if len(r) != len(times):
            raise VideoError(
                f"segment {seg} has {len(r)} frames, expected {len(times)}; delete it and run again"
            )
        ranks.append(r)
    delay = max(max((j - r for j, r in enumerate(rk)), default=0) for rk in ranks)
    delay = max(delay, 0)
    all_times = [t for _, times in segments for t in times]
    period = 1 / fps

    def time_at(g: int) -> Fraction:
        return all_times[g] if g >= 0 else all_times[0] + g * period

    with av.open(str(segments[0][0])) as first:
        stream = first.streams.video[0]
        name = stream.codec_context.name
        codec = _ENCODER_OF.get(name, name)
        writer = _SegmentMuxer(
            path, fps=fps, codec=codec if codec in CODEC_ALIASES else "libx264",
            audio_from=audio_from, audio_range=audio_range, time_base=time_base,
            rotation=rotation,
        )
        writer.codec = codec
        writer.open_like(stream)
    g0 = 0
    try:
        for (seg, times), rk in zip(segments, ranks, strict=True):
            with av.open(str(seg)) as container:
                j = 0
                for packet in container.demux(container.streams.video[0]):
                    if packet.size == 0:
                        continue
                    writer.mux_packet(packet, time_at(g0 + rk[j]), time_at(g0 + j - delay))
                    j += 1
                    if progress is not None:
                        progress(g0 + j)
            g0 += len(times)
        writer.close()
    except BaseException as exc:
        writer.abort()
        if isinstance(exc, (OSError, av.FFmpegError)):
            raise VideoError(f"cannot write {path}: {_one_line(exc)}") from None
        raise
    return g0
