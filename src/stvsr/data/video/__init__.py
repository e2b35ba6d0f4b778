"""Streaming video I/O on PyAV: read any FFmpeg-readable file or a folder of images, write videos
(x264 / x265 / FFV1) or numbered PNGs, with exact timestamps, colour handling and audio copy.

Nothing here holds a whole video in memory: :class:`VideoReader` decodes one frame at a time and
:class:`VideoWriter` encodes one frame at a time (copied audio is interleaved as it goes).

The package is split by job: :mod:`.colour` (colour tags, conventions, swscale settings),
:mod:`.info` (:class:`VideoInfo`, :class:`Frame`), :mod:`.reader` (:class:`VideoReader`,
:func:`probe`, :func:`count_frames`), :mod:`.writer` (:class:`VideoWriter`), :mod:`.mux` (the
muxer that writes every output file: audio / subtitle copy, declared frame rate, atomic rename)
and :mod:`.concat` (:func:`concat_segments`). Image I/O lives in :mod:`stvsr.data.images` (no
PyAV needed) and is re-exported here.

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

from stvsr.data.images import IMAGE_EXTENSIONS, list_frame_files, read_image, write_image
from stvsr.data.video.common import VIDEO_EXTENSIONS
from stvsr.data.video.concat import concat_segments
from stvsr.data.video.info import Frame, VideoInfo
from stvsr.data.video.reader import VideoReader, count_frames, probe
from stvsr.data.video.writer import CODEC_ALIASES, VideoWriter
from stvsr.errors import VideoError

__all__ = [
    "CODEC_ALIASES",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "Frame",
    "VideoError",
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
