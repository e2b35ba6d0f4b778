"""Still images and frame folders: read and write 8/16-bit RGB, list frames in natural order.

Kept apart from the video reader and writer so that code which only needs images (training
data, evaluation on frame folders) imports no video library; PyAV is imported only for 16-bit
PNGs, which Pillow cannot read or write in RGB.

Frames are ``np.ndarray`` of shape ``(H, W, 3)``, RGB, ``uint8`` or ``uint16`` (full 0-65535
scale).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from stvsr.errors import VideoError
from stvsr.frames import to_8bit

__all__ = ["IMAGE_EXTENSIONS", "check_rgb", "list_frame_files", "natural_key", "read_image",
           "write_image"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None)
    text = str(text or exc).strip() or type(exc).__name__
    return " ".join(text.split())


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {shape}")
    if rgb.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected uint8 or uint16 RGB, got {rgb.dtype}")
    return np.ascontiguousarray(rgb)


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key of a file name in natural order (``Frame 2`` before ``Frame 10``, case-folded)."""
    parts = re.split(r"([0-9]+)", name)
    key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p.casefold()) for p in parts if p)
    return key + ((2, 0, name),)


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files of ``folder`` in natural order (``Frame 2.png`` before ``Frame 10.png``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoError(f"frame folder not found: {folder} (give an existing folder of images)")
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    ]
    if not files:
        exts = " ".join(sorted(IMAGE_EXTENSIONS))
        raise VideoError(f"no image files ({exts}) in folder {folder}")
    return sorted(files, key=lambda p: natural_key(p.name))


def _png_bit_depth(path: Path) -> int:
    """Bit depth from a PNG's IHDR chunk; 8 for anything that is not a PNG."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(26)
    except OSError:
        return 8
    if len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return int(head[24])
    return 8


def read_image(path: str | Path, *, high_bit_depth: bool = False) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` RGB ``uint8``; 16-bit PNGs as ``uint16`` when
    ``high_bit_depth`` (otherwise rounded to 8 bits). Alpha is dropped, grey is expanded."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"image not found: {path}")
    if _png_bit_depth(path) == 16:
        import av

        try:
            with av.open(str(path)) as container:
                frame = next(container.decode(video=0))
                rgb16 = frame.to_ndarray(format="rgb48le")
        except (av.FFmpegError, StopIteration, OSError) as exc:
            raise VideoError(f"cannot read image {path}: {_one_line(exc)}") from None
        if high_bit_depth:
            return np.ascontiguousarray(rgb16)
        return to_8bit(rgb16)
    try:
        with Image.open(path) as img:
            if img.mode.startswith("I;16"):  # 16-bit grey (TIFF)
                grey = np.asarray(img).astype(np.uint16)
                rgb16 = np.repeat(grey[..., None], 3, axis=2)
                if high_bit_depth:
                    return rgb16
                return to_8bit(rgb16)
            if img.mode != "RGB":
                img = img.convert("RGB")
            return np.asarray(img, dtype=np.uint8).copy()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise VideoError(f"cannot read image {path}: {_one_line(exc)}") from None


def write_image(path: str | Path, rgb: np.ndarray, *, compress_level: int = 3) -> None:
    """Write ``(H, W, 3)`` RGB ``uint8`` (8-bit PNG) or ``uint16`` (16-bit PNG) to ``path``."""
    path = Path(path)
    rgb = check_rgb(rgb)
    if rgb.dtype == np.uint8:
        try:
            Image.fromarray(rgb).save(path, format="PNG", compress_level=compress_level)
        except OSError as exc:
            raise VideoError(f"cannot write image {path}: {_one_line(exc)}") from None
        return
    import av

    try:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le")
        ctx = av.CodecContext.create("png", "w")
        ctx.width, ctx.height, ctx.pix_fmt = rgb.shape[1], rgb.shape[0], "rgb48be"
        ctx.options = {"compression_level": str(compress_level)}
        frame = frame.reformat(format="rgb48be")
        data = b"".join(bytes(p) for p in ctx.encode(frame)) + b"".join(
            bytes(p) for p in ctx.encode(None)
        )
        path.write_bytes(data)
    except (OSError, av.FFmpegError) as exc:
        raise VideoError(f"cannot write image {path}: {_one_line(exc)}") from None
