"""Small helpers shared by the reader, the writer and the muxer: file extensions, error text,
fractions, and the checks every output path goes through."""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

import av

from stvsr.errors import VideoError

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".mov", ".avi"})
# NUT is written too (exact time bases, any codec): the intermediate segments of ``stvsr upscale``.
WRITE_EXTENSIONS = VIDEO_EXTENSIONS | {".nut"}


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (FFmpeg's own text for FFmpeg errors)."""
    text = getattr(exc, "strerror", None) if isinstance(exc, av.FFmpegError) else None
    text = str(text or exc).strip() or type(exc).__name__
    return " ".join(text.split())


def to_fraction(value: float | int | Fraction | None) -> Fraction | None:
    if value is None:
        return None
    return value if isinstance(value, Fraction) else Fraction(value)


def partial_path(target: Path) -> Path:
    """Where a video is written before the atomic rename onto ``target``."""
    return target.with_name(f".{target.stem}.partial{target.suffix}")


def check_output_dir(path: Path) -> None:
    """Raise :class:`VideoError` unless the folder of ``path`` exists and is writable."""
    parent = path.absolute().parent
    if not parent.is_dir():
        raise VideoError(f"output folder does not exist: {parent} (create it first)")
    try:  # a real write probe: os.access says yes to root on read-only mounts
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".stvsr-probe-"):
            pass
    except OSError as exc:
        raise VideoError(
            f"output folder is not writable: {parent} ({one_line(exc)}); choose another output path"
        ) from None


def check_audio_source(audio_from: str | Path | None) -> Path | None:
    """``audio_from`` as a path, after checking that it exists."""
    if audio_from is None:
        return None
    path = Path(audio_from)
    if not path.exists():
        raise VideoError(f"audio source not found: {path}")
    return path


def audio_span(
    audio_range: tuple[float | Fraction, float | Fraction | None] | None,
) -> tuple[Fraction, Fraction | None] | None:
    """``audio_range`` with exact fractions (a missing start is 0)."""
    if audio_range is None:
        return None
    return to_fraction(audio_range[0]) or Fraction(0), to_fraction(audio_range[1])
