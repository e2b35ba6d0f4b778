"""Writing: :class:`VideoWriter` encodes RGB frames one at a time (x264 / x265 / FFV1) into a
video file through a :class:`~stvsr.data.video.mux.Muxer`, or writes numbered PNGs."""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from stvsr.data.images import check_rgb, write_image
from stvsr.data.video.colour import (
    SWS_FLAGS,
    SWS_MATRIX,
    SWS_RANGE,
    output_color,
    parse_color,
    set_tags,
)
from stvsr.data.video.common import (
    VIDEO_EXTENSIONS,
    WRITE_EXTENSIONS,
    audio_span,
    check_audio_source,
    check_output_dir,
    one_line,
    to_fraction,
)
from stvsr.data.video.mux import Muxer, output_time_base
from stvsr.errors import VideoError

__all__ = ["CODEC_ALIASES", "VideoWriter"]

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
        self.fps = to_fraction(fps)
        if self.fps is not None and self.fps <= 0:
            raise VideoError(f"fps must be positive, got {fps}")
        suffix = self.path.suffix.lower()
        if suffix in WRITE_EXTENSIONS:
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
        self.time_base = to_fraction(time_base)
        self.color = parse_color(color)
        self.audio_from = check_audio_source(audio_from)
        self.audio_range = audio_span(audio_range)
        check_output_dir(self.path)
        self._muxer: Muxer | None = None
        if self.mode == "folder":
            self.partial = self.path.with_name(f".{self.path.name}.partial")
        else:
            self._muxer = Muxer(self.path, audio_from=self.audio_from, audio_range=self.audio_range)
            self.partial = self._muxer.partial
        self.frames_written = 0
        self.padded = (0, 0)
        self.closed = False
        self._size: tuple[int, int] | None = None
        self._dtype: Any = None
        self._last_pts: int | None = None
        self._last_time: Fraction | None = None
        self._stream: Any = None
        self._tb = Fraction(1)
        self._sws = VideoReformatter()

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
        rgb = check_rgb(rgb)
        t = self._next_time(to_fraction(time))
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
            if self._muxer is None:
                write_image(self.partial / f"{self.frames_written:08d}.png", rgb)
            else:
                self._encode(rgb, t)
        except VideoError:
            self.abort()
            raise
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise VideoError(f"cannot write {self.path}: {one_line(exc)}") from None
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
        if self._muxer is None:
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
                raise VideoError(f"cannot create {self.partial}: {one_line(exc)}") from None
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
        self._col = output_color(self.color, pix_fmt, w, h)
        fps = self.fps or Fraction(25)
        tb = output_time_base(self.path, fps, self.time_base)
        self._tb = tb

        def add_stream(container: Any) -> Any:
            if self.codec not in container.supported_codecs:
                raise VideoError(
                    f"{self.codec} cannot be stored in {self.path.suffix}; "
                    "use .mkv (FFV1 needs .mkv or .avi)"
                )
            stream = container.add_stream(self.codec, rate=fps)
            stream.width, stream.height = w + pw, h + ph
            stream.pix_fmt = pix_fmt
            stream.codec_context.time_base = tb
            stream.options = self._codec_options()
            set_tags(stream.codec_context, self._col)
            if self.sample_aspect_ratio and self.sample_aspect_ratio != 1:
                stream.codec_context.sample_aspect_ratio = self.sample_aspect_ratio
            return stream

        try:
            self._stream = self._muxer.open(
                add_stream,
                fps=fps,
                time_base=tb,
                codec=self.codec,
                rotation=self.rotation,
                warn_level=3,
            )
        except VideoError:
            self.abort()
            raise

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

    def _encode(self, rgb: np.ndarray, t: Fraction) -> None:
        assert self._muxer is not None
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
                dst_colorspace=SWS_MATRIX.get(col["matrix"]),
                dst_color_range=SWS_RANGE[col["range"]],
                interpolation=SWS_FLAGS,
            )
        set_tags(frame, col)
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
        self._muxer.mux(self._stream.encode(frame), t)

    # ---- finishing -----------------------------------------------------------------------
    def close(self) -> None:
        """Flush, finish the file and move it onto the target path (atomic rename)."""
        if self.closed:
            return
        if self.frames_written == 0:
            self.abort()
            raise VideoError(f"no frames were written to {self.path}; nothing saved")
        try:
            if self._muxer is not None:
                self._muxer.mux(self._stream.encode(None))  # the encoder's delayed packets
                self._muxer.finish()
            else:
                self._replace_folder()
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise VideoError(f"cannot finish {self.path}: {one_line(exc)}") from None
        self.closed = True

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
        muxer = getattr(self, "_muxer", None)
        if muxer is not None:
            muxer.abort()
            return
        partial = getattr(self, "partial", None)
        if partial is not None and partial.exists():
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            else:
                partial.unlink(missing_ok=True)
