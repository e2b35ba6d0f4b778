"""How the input was coded, and so which model serves it by default.

``stvsr upscale`` without ``--model`` picks the preset for what it is given (*design*): a video
whose codec discards information (H.264, HEVC, MPEG-2/4, VP9, AV1, MJPEG, ...) gets
:data:`~stvsr.infer.defaults.DEFAULT_COMPRESSED_MODEL` (the model for compressed input); a
folder of PNG frames, a lossless codec (FFV1, PNG, HuffYUV, Ut Video, raw video, ...) or an
x264/x265 file that its own encoder-settings SEI says was coded losslessly (``qp=0``,
``lossless``) or at a CRF below :data:`~stvsr.infer.defaults.COMPRESSED_MIN_CRF` gets the
clean model. The reason is printed with the choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stvsr.data.video.info import VideoInfo
from stvsr.infer.defaults import (
    COMPRESSED_MIN_CRF,
    DEFAULT_COMPRESSED_MODEL,
    DEFAULT_MODEL,
    INTERPOLATION_MODEL,
)

__all__ = ["LOSSLESS_CODECS", "SourceCoding", "default_model", "encoder_settings",
           "source_coding"]

LOSSLESS_CODECS = frozenset({
    "ffv1", "png", "apng", "rawvideo", "huffyuv", "ffvhuff", "utvideo", "magicyuv", "qtrle",
    "v210", "v410", "r210", "tiff", "bmp", "image", "zlib", "lagarith",
})
_IMAGE_LOSSY = (".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class SourceCoding:
    """``lossy``: whether decoding gives back less than was encoded; ``reason``: one phrase
    saying why (shown in the progress output)."""

    lossy: bool
    reason: str
    crf: float | None = None  # the CRF an x264 / x265 file's own settings give


def encoder_settings(path: Path, max_packets: int = 4) -> str:
    """The x264 / x265 settings string of ``path``'s first packets ('' if there is none)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            data = bytes(stream.codec_context.extradata or b"")
            for i, packet in enumerate(container.demux(stream)):
                data += bytes(packet)
                if i + 1 >= max_packets:
                    break
    except (av.error.FFmpegError, IndexError, OSError):
        return ""
    m = re.search(rb"(x26[45] .{0,4000}?)(?:\x00|\x80)", data, re.DOTALL)
    return m.group(1).decode("latin-1") if m else ""


def source_coding(info: VideoInfo) -> SourceCoding:
    """Whether the input described by ``info`` was coded lossily, and why we think so."""
    if info.is_folder:
        files = sorted(p for p in Path(info.path).iterdir() if p.is_file())
        if any(p.suffix.lower() in _IMAGE_LOSSY for p in files[:8]):
            return SourceCoding(True, "a folder of JPEG/WebP frames")
        return SourceCoding(False, "a folder of image frames")
    codec = (info.codec or "").lower()
    if codec in LOSSLESS_CODECS:
        return SourceCoding(False, f"{codec} is a lossless codec")
    if codec in ("h264", "hevc", "libx264", "libx265"):
        settings = encoder_settings(Path(info.path))
        x265_lossless = "lossless" in settings and "no-lossless" not in settings
        if re.search(r"\bqp=0\b", settings) or x265_lossless:
            return SourceCoding(False, f"{codec} coded losslessly (its encoder settings say so)")
        rate = re.search(r"\bcrf=([0-9.]+)", settings)
        if rate:
            crf = float(rate.group(1))
            return SourceCoding(True, f"{codec} at CRF {crf:g}", crf)
    return SourceCoding(True, f"{codec or 'this codec'} is lossy")


def default_model(info: VideoInfo, scale: float | None) -> tuple[str, str]:
    """The preset ``stvsr upscale`` uses when none is named, and why: frame interpolation only
    for ``--scale 1``, else the compressed-input model for lossy input and the clean one
    otherwise."""
    if scale is not None and float(scale) == 1:
        return INTERPOLATION_MODEL, "--scale 1: frame interpolation only"
    coding = source_coding(info)
    if not coding.lossy:
        return DEFAULT_MODEL, f"input is not lossy-coded ({coding.reason})"
    if coding.crf is not None and coding.crf < COMPRESSED_MIN_CRF:
        return DEFAULT_MODEL, (f"input is coded at high quality ({coding.reason}, below CRF "
                               f"{COMPRESSED_MIN_CRF:g}): the clean model serves it better")
    return DEFAULT_COMPRESSED_MODEL, f"input is compressed ({coding.reason})"
