"""Joining encoded segments into one video without re-encoding (:func:`concat_segments`): their
packets are copied through the same :class:`~stvsr.data.video.mux.Muxer` as
:class:`VideoWriter` uses, with exact timestamps."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

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

__all__ = ["concat_segments"]

# decoder name -> the encoder name the muxer's tagging rules use
_ENCODER_OF = {"h264": "libx264", "hevc": "libx265", "ffv1": "ffv1"}


def _packet_ranks(path: Path) -> list[int]:
    """Presentation rank of every video packet of ``path``, in decode order."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            pts = [p.pts for p in container.demux(stream) if p.size > 0]
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise VideoError(
            f"segment {path} is unreadable ({one_line(exc)}); delete it and run again"
        ) from None
    if any(p is None for p in pts):
        raise VideoError(f"segment {path} has packets without timestamps; delete it")
    order = {p: r for r, p in enumerate(sorted(pts))}
    if len(order) != len(pts):
        raise VideoError(f"segment {path} has duplicate timestamps; delete it and run again")
    return [order[p] for p in pts]


def _check_target(path: Path, fps: Fraction) -> None:
    if fps <= 0:
        raise VideoError(f"fps must be positive, got {fps}")
    if path.suffix.lower() not in WRITE_EXTENSIONS:
        raise VideoError(
            f"unsupported output {path.name!r}: segments join into a video file "
            f"({' '.join(sorted(VIDEO_EXTENSIONS))})"
        )


def concat_segments(
    segments: list[tuple[Path, list[Fraction]]],
    path: str | Path,
    *,
    fps: Fraction,
    time_base: Fraction | None = None,
    audio_from: str | Path | None = None,
    audio_range: tuple[float | Fraction, float | Fraction | None] | None = None,
    rotation: int = 0,
    progress: Callable[[int], Any] | None = None,
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
    fps = to_fraction(fps) or Fraction(25)
    period = 1 / fps

    def time_at(g: int) -> Fraction:
        return all_times[g] if g >= 0 else all_times[0] + g * period

    path = Path(path)
    _check_target(path, fps)
    audio = check_audio_source(audio_from)
    muxer = Muxer(path, audio_from=audio, audio_range=audio_span(audio_range))
    check_output_dir(path)
    tb = output_time_base(path, fps, to_fraction(time_base))
    duration = max(1, round(period / tb))
    with av.open(str(segments[0][0])) as first:
        template = first.streams.video[0]
        name = template.codec_context.name
        stream = muxer.open(
            lambda container: container.add_stream_from_template(template),
            fps=fps,
            time_base=tb,
            codec=_ENCODER_OF.get(name, name),
            rotation=rotation,
        )
    g0 = 0
    try:
        for (seg, times), rk in zip(segments, ranks, strict=True):
            with av.open(str(seg)) as container:
                j = 0
                for packet in container.demux(container.streams.video[0]):
                    if packet.size == 0:
                        continue
                    packet.stream = stream
                    packet.time_base = tb
                    packet.pts = round(time_at(g0 + rk[j]) / tb)
                    packet.dts = round(time_at(g0 + j - delay) / tb)
                    packet.duration = duration
                    muxer.mux(packet, time_at(g0 + rk[j]))
                    j += 1
                    if progress is not None:
                        progress(g0 + j)
            g0 += len(times)
        if g0 == 0:
            raise VideoError(f"no frames were written to {path}; nothing saved")
        try:
            muxer.finish()
        except (OSError, av.FFmpegError) as exc:
            raise VideoError(f"cannot finish {path}: {one_line(exc)}") from None
    except BaseException as exc:
        muxer.abort()
        if isinstance(exc, (OSError, av.FFmpegError)):
            raise VideoError(f"cannot write {path}: {one_line(exc)}") from None
        raise
    return g0
