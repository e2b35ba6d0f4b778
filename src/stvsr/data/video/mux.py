"""Muxing: the one component that writes an output container, used by :class:`VideoWriter`
(packets it encodes) and by :func:`concat_segments` (packets copied from segments).

A :class:`Muxer` writes ``.<name>.partial<ext>`` next to the target, holds the video stream that
its caller adds, copies (remuxes) the audio and subtitle streams of another file interleaved by
time, declares the frame rate, and renames the file onto the target when finished.

Copied packets keep their time relative to the source's first video frame, which is time 0 of
the output. Formats without negative timestamps (Matroska, AVI, NUT) cannot hold a packet that
starts before 0 (the AAC encoder's priming packet, which an MP4 edit list places at -1024
samples, or one straddling an ``audio_range`` start): FFmpeg would shift the whole file so that
it starts at 0 (``avoid_negative_ts``), the video included. Such packets are dropped instead
(subtitles are trimmed to 0), so the video starts at 0 and the copied streams keep their sync
(the first audio packet moves by less than one audio frame). A Matroska source's codec delay
(its ``CodecDelay``, which lets the priming packet sit before 0) is carried over to a Matroska
output, and packets down to it are kept.

The declared rate reads back exactly from MP4 / MOV (the time base divides the frame period).
Matroska can only store it as a DefaultDuration in whole nanoseconds, which FFmpeg's demuxer
reduces to a fraction of terms at most 30000: 24000/1001 reads back exactly, 48000/1001 as
7001/146 and 60000/1001 as 19001/317; :class:`VideoReader` snaps such rates back (see
:func:`~stvsr.data.video.info.clean_rate`).
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from stvsr.data.video.common import one_line, partial_path
from stvsr.data.video.reader import VideoReader
from stvsr.errors import VideoError


def output_time_base(path: Path, fps: Fraction, time_base: Fraction | None) -> Fraction:
    """The video time base of an output: ``1 / fps`` for AVI (it counts frames), else
    ``time_base`` or ``1 / lcm(fps numerator, 90000)`` (exact for ``k / fps`` and for the
    usual 90 kHz clock)."""
    if path.suffix.lower() == ".avi":
        return 1 / fps
    return time_base or Fraction(1, math.lcm(fps.numerator, 90000))


def _is_matroska(container: Any) -> bool:
    return "matroska" in container.format.name.split(",")


class Muxer:
    """Write one output file: a video stream, copied audio / subtitle streams, atomic finish.

    ``audio_from`` / ``audio_range`` are as in :class:`VideoWriter`. Call :meth:`open` once,
    then :meth:`mux` for the video packets in decode order, then :meth:`finish` (or
    :meth:`abort`, which deletes the partial file and leaves an existing target untouched).
    """

    def __init__(
        self,
        path: Path,
        *,
        audio_from: Path | None = None,
        audio_range: tuple[Fraction, Fraction | None] | None = None,
    ) -> None:
        self.path = path
        self.partial = partial_path(path)
        self.audio_from = audio_from
        self.audio_range = audio_range
        self.container: Any = None
        self.stream: Any = None
        self.time_base = Fraction(1)
        self._audio_in: Any = None
        self._audio_iter: Iterator[Any] | None = None
        self._audio_pending: Any = None
        self._audio_map: dict[int, tuple[Any, int]] = {}
        self._audio_ref = Fraction(0)
        # per copied stream: the lowest pts (stream time base) the output can hold; absent until
        # the stream's first packet is seen, and never set where negative timestamps are allowed
        self._lowest: dict[int, int] = {}
        self._floored = False  # the output cannot store timestamps below 0
        self._keeps_delay = False  # a Matroska source's codec delay carries over to the output

    # ---- opening -------------------------------------------------------------------------
    def open(
        self,
        add_stream: Callable[[Any], Any],
        *,
        fps: Fraction,
        time_base: Fraction,
        codec: str,
        rotation: int = 0,
        warn_level: int = 2,
    ) -> Any:
        """Create the partial file and return its video stream.

        ``add_stream(container)`` adds the video stream (an encoder's, or a copy of a segment's);
        the muxer then sets its time base and declared rate ``fps``, the tags every output gets
        (``hvc1`` for H.265 in MP4 / MOV, the display rotation) and adds the copied streams.
        ``warn_level`` is the ``stacklevel`` (seen from the caller) of the skip warnings.
        """
        self.time_base = time_base
        try:
            container = av.open(str(self.partial), mode="w")
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(f"cannot create {self.path}: {one_line(exc)}") from None
        self.container = container
        try:
            stream = add_stream(container)
            stream.time_base = time_base
            stream.codec_context.framerate = fps
            if codec == "libx265" and self.path.suffix.lower() in (".mp4", ".mov"):
                stream.codec_tag = "hvc1"
            if rotation:
                stream.set_display_rotation(rotation)
            self.stream = stream
            if self.audio_from is not None:
                self._open_audio(container, warn_level + 1)
        except VideoError:
            self.abort()
            raise
        except (av.FFmpegError, ValueError, OSError) as exc:
            self.abort()
            raise VideoError(f"cannot set up {self.path}: {one_line(exc)}") from None
        return stream

    def _open_audio(self, container: Any, warn_level: int) -> None:
        assert self.audio_from is not None
        try:
            src = av.open(str(self.audio_from))
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(
                f"cannot open audio source {self.audio_from}: {one_line(exc)}"
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
        self._floored = not container.format.flags & av.format.Flags.ts_negative.value
        self._keeps_delay = _is_matroska(container) and _is_matroska(src)
        supported = container.supported_codecs
        chosen = []
        for s in list(src.streams.audio) + list(src.streams.subtitles):
            name = s.codec_context.name if s.codec_context is not None else s.codec.name
            if name not in supported:
                warnings.warn(
                    f"{s.type} stream {s.index} ({name}) cannot be stored in "
                    f"{self.path.suffix}; skipped (use .mkv to keep it)",
                    RuntimeWarning,
                    stacklevel=warn_level + 1,
                )
                continue
            try:
                out = container.add_stream_from_template(s)
            except (av.FFmpegError, ValueError) as exc:
                warnings.warn(
                    f"{s.type} stream {s.index} ({name}) skipped: {one_line(exc)}",
                    RuntimeWarning,
                    stacklevel=warn_level + 1,
                )
                continue
            self._audio_map[s.index] = (out, int(math.floor(ref / s.time_base)))
            chosen.append(s)
        if chosen:
            self._audio_iter = src.demux(*chosen)
        else:
            src.close()
            self._audio_in = None

    # ---- writing -------------------------------------------------------------------------
    def mux(self, packets: Any | Iterable[Any], time: Fraction | None = None) -> None:
        """Mux video ``packets``; with ``time`` (seconds), copied packets up to it go first."""
        if time is not None:
            self._pump_audio(time)
        self.container.mux(packets)

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
                lowest = self._lowest_pts(pkt)
                pkt.pts = pkt.pts - offset if pkt.pts is not None else None
                pkt.dts = pkt.dts - offset
                t = (pkt.pts if pkt.pts is not None else pkt.dts) * pkt.time_base
                if t + (pkt.duration or 0) * pkt.time_base < 0:
                    continue  # ends before the video starts (a packet ending at 0 is pre-roll)
                if end is not None and t >= end:
                    continue
                if lowest is not None and not self._fit_floor(pkt, lowest):
                    continue  # would start before what the format holds: it would shift the file
                pkt.stream = out
                self._audio_pending = pkt
            t = pkt.dts * pkt.time_base
            if until is not None and t > until:
                return
            self._audio_pending = None
            self.container.mux(pkt)

    def _lowest_pts(self, pkt: Any) -> int | None:
        """The lowest pts (before the offset to output time) the output holds for ``pkt`` 's
        stream; ``None`` where negative timestamps are fine. Called with every packet, in order:
        a stream's first packet carries its lowest time, so a negative one from a Matroska source
        shows the codec delay that its ``CodecDelay`` (copied to a Matroska output) allows."""
        if not self._floored:
            return None
        index = pkt.stream.index
        if index not in self._lowest:
            first = pkt.pts if pkt.pts is not None else pkt.dts
            self._lowest[index] = min(0, first) if self._keeps_delay else 0
        return self._lowest[index]

    def _fit_floor(self, pkt: Any, lowest: int) -> bool:
        """Whether ``pkt`` (in output time) starts at ``lowest`` or later; a subtitle that
        starts earlier but ends later is trimmed to start at ``lowest``."""
        start = min(pkt.dts, pkt.pts if pkt.pts is not None else pkt.dts)
        if start >= lowest:
            return True
        if pkt.stream.type != "subtitle" or not pkt.duration or start + pkt.duration <= lowest:
            return False
        pkt.duration = start + pkt.duration - lowest
        pkt.pts = pkt.dts = lowest
        return True

    # ---- finishing -----------------------------------------------------------------------
    def finish(self) -> None:
        """Mux the rest of the copied streams, close the file and move it onto the target."""
        self._pump_audio(None)
        self.container.close()
        self.container = None
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Close everything and delete the partial file; an existing target is left untouched."""
        for attr in ("container", "_audio_in"):
            obj = getattr(self, attr, None)
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # noqa: BLE001 - already failing; cleanup must go on
                    pass
                setattr(self, attr, None)
        self._audio_iter = None
        if self.partial.is_dir():
            shutil.rmtree(self.partial, ignore_errors=True)
        else:
            self.partial.unlink(missing_ok=True)
