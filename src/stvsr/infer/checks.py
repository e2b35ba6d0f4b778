"""Checks of ``stvsr upscale`` that need no model: the output path and codec, the output bit
depth, and disk errors turned into one-line messages that say how to resume."""

from __future__ import annotations

import errno
import io
import tempfile
from pathlib import Path

import av

from stvsr.data.video import CODEC_ALIASES, VIDEO_EXTENSIONS, VideoInfo
from stvsr.errors import StvsrError, VideoError

__all__ = ["check_output", "disk_error", "output_bits"]

#: Container format of each video extension (to ask whether it can store a codec).
CONTAINER_FORMAT = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}


def check_output(output: Path, input_path: Path, codec: str) -> str:
    """Validate the output path and codec; returns ``"video"`` or ``"folder"``."""
    if output.resolve() == input_path.resolve():
        raise StvsrError("the output path is the input path; choose another output")
    suffix = output.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        mode = "video"
    elif suffix == "" or output.is_dir():
        mode = "folder"
    else:
        raise StvsrError(
            f"unsupported output {output.name!r}: use {' '.join(sorted(VIDEO_EXTENSIONS))} "
            "or a name without extension for a folder of PNG frames"
        )
    if codec.lower() not in CODEC_ALIASES:
        raise StvsrError(f"unsupported codec {codec!r}; use libx264, libx265 or ffv1")
    if mode == "video":
        enc = CODEC_ALIASES[codec.lower()]
        with av.open(io.BytesIO(), "w", format=CONTAINER_FORMAT[suffix]) as probe_c:
            if enc not in probe_c.supported_codecs:
                raise StvsrError(f"{enc} cannot be stored in {suffix}; use .mkv")
    parent = output.absolute().parent
    if not parent.is_dir():
        raise VideoError(f"output folder does not exist: {parent} (create it first)")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".stvsr-probe-"):
            pass
    except OSError as exc:
        raise VideoError(
            f"output folder is not writable: {parent} ({exc.strerror or exc}); "
            "choose another output path"
        ) from None
    return mode


def output_bits(info: VideoInfo, pix_fmt: str | None) -> bool:
    """True when the output keeps more than 8 bits (``pix_fmt``'s depth, else the input's)."""
    if pix_fmt:
        try:
            return int(av.VideoFormat(pix_fmt).components[0].bits) > 8
        except (ValueError, av.FFmpegError):
            raise StvsrError(f"unknown pixel format {pix_fmt!r}") from None
    return info.bit_depth > 8


def disk_error(exc: BaseException, where: Path) -> StvsrError:
    """``exc`` (raised while writing ``where``) as one :class:`VideoError` line; a full disk
    says that a rerun resumes."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "No space left" in text:
        return VideoError(
            f"disk full while writing {where}; free space and run the same command again to "
            "resume (finished segments are kept)"
        )
    if isinstance(exc, StvsrError):
        return exc
    return VideoError(f"cannot write {where}: {text}")
