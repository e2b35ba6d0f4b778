"""Real video encoding of a frame clip, in memory: the codec stage of a degradation chain.

A clip of 8-bit RGB frames is encoded as *one* video stream with FFmpeg's encoders as PyAV
bundles them (libx264, libx265, mpeg2video, mpeg4), decoded back and returned as RGB frames, so
the artifacts are those of a real file: intra and inter prediction, GOP structure and B-frames as
the encoder chooses them (not per-frame JPEG).

Colour (*fact* about FFmpeg, matched here): with no colour flags, FFmpeg's scaler converts RGB
to YUV with the BT.601 matrix in limited range and back the same way; PyAV's reformatter has the
same defaults, so ``ffmpeg -i %05d.png -c:v libx264 -crf 25 out.mp4`` followed by
``ffmpeg -i out.mp4 %05d.png`` and :func:`encode_clip` with ``pix_fmt="yuv444p"`` go through the
same conversions. The encoders run single-threaded: a frame-threaded x264 (FFmpeg's default
uses about 1.5 threads per core) makes a slightly different bitstream on machines with other
core counts, and one thread makes the same LR everywhere (*design*). Frames are edge-padded to
a multiple of 16 pixels (whole macroblocks) and cropped after decoding (x264 pads the last
macroblocks by repeating the edge itself). x264 runs without its assembly kernels
(``asm=0``): they must give the same bitstream as its C code (x264's own ``checkasm``), but in
this PyAV build two encodings of the same clip differed now and then with them (measured: 2-6
distinct outputs in 60 runs of one clip; with ``asm=0``, 1). It costs about 1.2x the time on a
7-frame 36x36 training clip and 2.8x on a 49-frame 180x144 Vid4 clip (0.7 -> 2.1 s). For
x265, frames are padded to at least 64x64: this build's libx265 corrupted the heap (the process
aborts) on 48x48 and 48x32 frames, and not on 64x64 or larger.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from stvsr.errors import StvsrError

__all__ = ["CODECS", "CodecSettings", "encode_clip"]

# codec name in a degradation spec -> FFmpeg encoder
CODECS: dict[str, str] = {
    "h264": "libx264",
    "h265": "libx265",
    "mpeg2": "mpeg2video",
    "mpeg4": "mpeg4",
}
_CRF_CODECS = ("h264", "h265")
_PIX_FMTS = ("yuv420p", "yuv422p", "yuv444p")
_MB = 16  # frames are edge-padded to whole macroblocks (see the module docstring)


@dataclass(frozen=True)
class CodecSettings:
    """One encoding of a clip.

    ``crf`` (x264/x265 constant rate factor), ``qp`` (constant quantiser; 0 is lossless for
    x264/x265; for MPEG-2/4 the fixed quantiser scale 1-31), ``bitrate`` (bits per second,
    e.g. 500_000): exactly one rate control, or none for the encoder's default. ``preset``:
    x264/x265 preset (their default, ``medium``). ``gop`` / ``bframes``: ``None`` leaves them
    to the encoder. ``fps``: the stream's frame rate (rate control depends on it).
    """

    codec: str = "h264"
    crf: float | None = None
    qp: int | None = None
    bitrate: int | None = None
    preset: str | None = None
    pix_fmt: str = "yuv420p"
    fps: int = 25
    gop: int | None = None
    bframes: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise StvsrError(f"unknown codec {self.codec!r}; choose one of {', '.join(CODECS)}")
        given = [k for k in ("crf", "qp", "bitrate") if getattr(self, k) is not None]
        if len(given) > 1:
            raise StvsrError(f"{self.codec}: give one of crf, qp, bitrate (got {given})")
        if self.crf is not None and self.codec not in _CRF_CODECS:
            raise StvsrError(f"{self.codec} has no crf; use q= (quantiser 1-31) or b= (bitrate)")
        if self.pix_fmt not in _PIX_FMTS:
            raise StvsrError(f"pixel format {self.pix_fmt!r}; choose one of {', '.join(_PIX_FMTS)}")
        if self.codec == "mpeg2" and self.pix_fmt == "yuv444p":
            raise StvsrError("mpeg2 encodes yuv420p or yuv422p, not yuv444p")
        if self.fps < 1:
            raise StvsrError(f"fps must be >= 1, got {self.fps}")

    def options(self) -> dict[str, str]:
        """The encoder's private options (``-crf``, ``-qp``, ``-preset``, ...)."""
        opts: dict[str, str] = {}
        if self.codec in _CRF_CODECS:
            if self.crf is not None:
                opts["crf"] = f"{self.crf:g}"
            if self.qp is not None:
                opts["qp"] = str(int(self.qp))
            if self.preset is not None:
                opts["preset"] = self.preset
            if self.codec == "h264":
                opts["x264-params"] = "asm=0"  # see the module docstring
            if self.codec == "h265":
                opts["x265-params"] = "log-level=none:pools=none:frame-threads=1"
        elif self.qp is not None:
            q = str(int(self.qp))
            opts.update({"qmin": q, "qmax": q})
        if self.gop is not None:
            opts["g"] = str(int(self.gop))
        if self.bframes is not None:
            opts["bf"] = str(int(self.bframes))
        opts.update(self.extra)
        return opts


def encode_clip(frames: np.ndarray, settings: CodecSettings) -> np.ndarray:
    """Encode ``(N, H, W, 3)`` uint8 RGB frames as one video stream and decode them back.

    Returns ``(N, H, W, 3)`` uint8. Raises :class:`~stvsr.errors.StvsrError` when the encoder
    is missing from this PyAV build or returns a different number of frames.
    """
    import av

    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise StvsrError(f"encode_clip: expected (N, H, W, 3) uint8, got {frames.shape} "
                         f"{frames.dtype}")
    encoder = CODECS[settings.codec]
    if encoder not in av.codecs_available:
        raise StvsrError(f"this PyAV build has no {encoder} encoder; install PyAV from PyPI")
    n, h, w, _ = frames.shape
    ph, pw = -(-h // _MB) * _MB, -(-w // _MB) * _MB
    if settings.codec == "h265":  # this x265 build corrupts memory on frames under 64 px
        ph, pw = max(ph, 64), max(pw, 64)
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    buf = io.BytesIO()
    container = "mpeg" if settings.codec == "mpeg2" else "mp4"
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(encoder, rate=settings.fps)
        stream.width, stream.height, stream.pix_fmt = pw, ph, settings.pix_fmt
        if settings.bitrate is not None:
            stream.bit_rate = int(settings.bitrate)
        stream.options = settings.options()
        stream.codec_context.thread_count = 1  # the same bitstream on any machine
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    buf.seek(0)
    decoded = []
    with av.open(buf, "r") as inp:
        for frame in inp.decode(video=0):
            decoded.append(frame.to_ndarray(format="rgb24")[:h, :w])
    if len(decoded) != n:
        raise StvsrError(f"{encoder} round trip returned {len(decoded)} of {n} frames")
    return np.stack(decoded)
