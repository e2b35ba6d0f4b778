"""Colour metadata: FFmpeg's enum values and names, name normalisation, the conventions used
for untagged streams, and the swscale settings of the YUV <-> RGB conversions."""

from __future__ import annotations

from typing import Any

import av
from av.video.reformatter import ColorRange, Colorspace, Interpolation

from stvsr.errors import VideoError

# FFmpeg enum values -> FFmpeg's own names (as ffprobe prints them).
RANGE_NAMES = {0: "unknown", 1: "tv", 2: "pc"}
MATRIX_NAMES = {
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
PRIMARIES_NAMES = {
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
TRC_NAMES = {
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
SWS_MATRIX = {
    "bt709": Colorspace.ITU709,
    "fcc": Colorspace.FCC,
    "bt470bg": Colorspace.ITU601,
    "smpte170m": Colorspace.ITU601,
    "smpte240m": Colorspace.SMPTE240M,
    "bt2020nc": Colorspace.BT2020,
    "bt2020c": Colorspace.BT2020,
}
SWS_RANGE = {"tv": ColorRange.MPEG, "pc": ColorRange.JPEG}
HDR_TRC = {"smpte2084", "arib-std-b67"}
# Accurate rounding and full chroma interpolation: ~0.5 grey levels better round trips.
SWS_FLAGS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


def guess_matrix(width: int, height: int) -> str:
    """The matrix players assume for an untagged stream: BT.709 for HD, BT.601 otherwise."""
    if width >= 1280 or height >= 720:
        return "bt709"
    return "bt470bg" if height == 576 else "smpte170m"


def is_rgb_format(pix_fmt: str) -> bool:
    try:
        return bool(av.VideoFormat(pix_fmt).is_rgb)
    except (ValueError, av.FFmpegError):
        return pix_fmt.startswith(("rgb", "bgr", "gbr", "argb", "abgr"))


def format_bits(pix_fmt: str) -> int:
    try:
        return int(av.VideoFormat(pix_fmt).components[0].bits)
    except (ValueError, IndexError, av.FFmpegError):
        return 8


def tag_names(obj: Any) -> dict[str, str]:
    """The colour tags of a frame or codec context as FFmpeg names (``"unknown"`` if absent)."""
    return {
        "range": RANGE_NAMES.get(int(obj.color_range), "unknown"),
        "matrix": MATRIX_NAMES.get(int(obj.colorspace), "unknown"),
        "primaries": PRIMARIES_NAMES.get(int(obj.color_primaries), "unknown"),
        "trc": TRC_NAMES.get(int(obj.color_trc), "unknown"),
    }


def set_tags(obj: Any, col: dict[str, str]) -> None:
    """Store ``{"range", "matrix", "primaries", "trc"}`` names on a frame or codec context."""
    obj.color_range = _code(col["range"], RANGE_NAMES)
    obj.colorspace = _code(col["matrix"], MATRIX_NAMES)
    obj.color_primaries = _code(col["primaries"], PRIMARIES_NAMES)
    obj.color_trc = _code(col["trc"], TRC_NAMES)


def _code(name: str, names: dict[int, str]) -> int:
    return next(k for k, v in names.items() if v == name)


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


def parse_color(color: dict[str, str | int] | None) -> dict[str, str]:
    """Normalise a ``color=`` argument (names, aliases or enum values) to FFmpeg names."""
    color = dict(color or {})
    unknown = set(color) - {"range", "matrix", "space", "colorspace", "primaries", "trc"}
    if unknown:
        raise VideoError(
            f"unknown colour keys {sorted(unknown)}; use range, matrix, primaries, trc"
        )
    out: dict[str, str] = {}
    if "range" in color:
        out["range"] = _norm_name(color["range"], RANGE_NAMES, "range")
    for key in ("matrix", "space", "colorspace"):
        if key in color:
            out["matrix"] = _norm_name(color[key], MATRIX_NAMES, "matrix")
    if "primaries" in color:
        out["primaries"] = _norm_name(color["primaries"], PRIMARIES_NAMES, "primaries")
    if "trc" in color:
        out["trc"] = _norm_name(color["trc"], TRC_NAMES, "trc")
    return out


def input_color(
    tags: dict[str, str], pix_fmt: str, width: int, height: int
) -> dict[str, str]:
    """Effective colour of a decoded stream: untagged range / matrix follow the usual player
    convention (full range for ``yuvj*``, the matrix from :func:`guess_matrix`)."""
    if is_rgb_format(pix_fmt):
        rng, matrix = "pc", "gbr"
    else:
        rng = tags["range"]
        if rng not in ("tv", "pc"):
            rng = "pc" if pix_fmt.startswith("yuvj") else "tv"
        matrix = tags["matrix"]
        if matrix in ("unknown", "reserved", "gbr"):
            matrix = guess_matrix(width, height)
    return {"range": rng, "matrix": matrix, "primaries": tags["primaries"], "trc": tags["trc"]}


def output_color(
    color: dict[str, str], pix_fmt: str, width: int, height: int
) -> dict[str, str]:
    """Effective colour of an encoded stream from the writer's ``color`` (default BT.709,
    limited range; RGB formats are full-range ``gbr``)."""
    if is_rgb_format(pix_fmt):
        rng, matrix = "pc", "gbr"
    else:
        rng = "pc" if pix_fmt.startswith("yuvj") else color.get("range", "tv")
        rng = rng if rng in ("tv", "pc") else "tv"
        matrix = color.get("matrix", "bt709")
        if matrix in ("unknown", "gbr"):
            matrix = guess_matrix(width, height)
    return {
        "range": rng,
        "matrix": matrix,
        "primaries": color.get("primaries", "bt709"),
        "trc": color.get("trc", "bt709"),
    }
