"""Reading: :class:`VideoReader` streams the frames of a video file or an image folder, one at a
time, with exact times; :func:`probe` and :func:`count_frames` describe a file."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from stvsr.data.images import list_frame_files, read_image
from stvsr.data.video.colour import SWS_FLAGS, SWS_MATRIX, SWS_RANGE, is_rgb_format
from stvsr.data.video.common import one_line, to_fraction
from stvsr.data.video.info import Frame, VideoInfo, container_info, folder_info
from stvsr.errors import VideoError

__all__ = ["Frame", "VideoInfo", "VideoReader", "count_frames", "probe"]

MAX_BAD_PACKETS = 100


def open_input(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        raise VideoError(
            f"cannot open {path} as a video ({one_line(exc)}); is it a complete, readable video?"
        ) from None
    except (OSError, UnicodeError) as exc:
        raise VideoError(f"cannot open {path}: {one_line(exc)}") from None


def video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        raise VideoError(f"{path} has no video stream (give a video file or a folder of images)")
    return container.streams.video[0]


def decode_frames(container: Any, stream: Any, path: Path) -> Iterator[Any]:
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
                f"{path}: stopped reading at damaged data ({one_line(exc)})",
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
                    f"{path}: skipping undecodable packet(s) ({one_line(exc)})",
                    RuntimeWarning,
                    stacklevel=3,
                )
            if bad > MAX_BAD_PACKETS:
                raise VideoError(
                    f"{path} is too damaged to decode (more than {MAX_BAD_PACKETS} bad packets)"
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
        self.start = to_fraction(start)
        self.end = to_fraction(end)
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
            fps = to_fraction(fps_for_folders)
            if fps is None or fps <= 0:
                raise VideoError("fps_for_folders must be a positive frame rate")
            self._files = list_frame_files(self.path)
            self.info = folder_info(self.path, self._files, fps)
            return
        if self.path.stat().st_size == 0:
            raise VideoError(f"{self.path} is an empty file (0 bytes); give a complete video")
        container = open_input(self.path)
        try:
            stream = video_stream(container, self.path)
            first = next(iter(decode_frames(container, stream, self.path)), None)
            if first is None:
                raise VideoError(
                    f"{self.path} contains no decodable video frame (corrupt or truncated file?)"
                )
            self.info = container_info(self.path, container, stream, first)
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
        if is_rgb_format(frame.format.name):
            return frame.to_ndarray(format=fmt)
        col = self._color
        return self._sws.reformat(
            frame,
            format=fmt,
            src_colorspace=SWS_MATRIX.get(col["matrix"]),
            src_color_range=SWS_RANGE[col["range"]],
            interpolation=SWS_FLAGS,
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
                container = open_input(self.path)
                self.close()
                self._container = container
                stream = video_stream(container, self.path)
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
                for frame in decode_frames(container, stream, self.path):
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
    container = open_input(reader.path)
    try:
        stream = video_stream(container, path)
        n = 0
        if decode:
            stream.thread_type = "AUTO"
            for _ in decode_frames(container, stream, path):
                n += 1
            return n
        try:
            for packet in container.demux(stream):
                if packet.size > 0:
                    n += 1
        except av.FFmpegError as exc:
            warnings.warn(
                f"{path}: stopped counting at damaged data ({one_line(exc)})",
                RuntimeWarning,
                stacklevel=2,
            )
        return n
    finally:
        container.close()
