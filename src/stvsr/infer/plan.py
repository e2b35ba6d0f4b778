"""Planning helpers of `stvsr upscale`: output checks, the resume key (model hash, runtime),
time bases, bit depth, time and memory estimates, folder assembly, disk errors."""

from __future__ import annotations

import errno
import hashlib
import io
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
import torch
from torch import nn

from stvsr.data.video import (
    CODEC_ALIASES,
    VIDEO_EXTENSIONS,
    VideoInfo,
)
from stvsr.errors import StvsrError, VideoError
from stvsr.infer.layout import layout_of
from stvsr.weights import sha256_file

if TYPE_CHECKING:
    pass



_CONTAINER_FORMAT = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _check_output(output: Path, input_path: Path, codec: str) -> str:
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
        with av.open(io.BytesIO(), "w", format=_CONTAINER_FORMAT[suffix]) as probe_c:
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


def _model_hash(net: nn.Module) -> str:
    src = getattr(net, "weights_source", None)
    if src and Path(src).is_file():
        return "sha256:" + sha256_file(src)
    h = hashlib.sha256(type(net).__qualname__.encode())
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return "state:" + h.hexdigest()


def _runtime_key(net: nn.Module, device: str, precision: str) -> dict[str, Any]:
    """What the run's frames depend on besides the input, model and options: the device (its
    type, and the GPU model), the precision and the deformable-conv implementation."""
    from stvsr.ops.dcn import inference_impl

    dev = torch.device(device)
    where = dev.type
    if dev.type == "cuda" and torch.cuda.is_available():
        where += f" ({torch.cuda.get_device_name(dev)})"
    return {"device": where, "precision": precision, "dcn": inference_impl(net, dev)}


def _time_base(times: list[Fraction], rate: Fraction) -> Fraction | None:
    """``1 / L`` with every time a multiple (exact timestamps), or ``None`` if L is too large."""
    lcm = math.lcm(90000, rate.numerator)
    for t in times:
        lcm = math.lcm(lcm, t.denominator)
        if lcm > 2**30:
            return None
    return Fraction(1, lcm)


def _out_bits(info: VideoInfo, pix_fmt: str | None) -> bool:
    """True when the output keeps more than 8 bits."""
    if pix_fmt:
        try:
            return int(av.VideoFormat(pix_fmt).components[0].bits) > 8
        except (ValueError, av.FFmpegError):
            raise StvsrError(f"unknown pixel format {pix_fmt!r}") from None
    return info.bit_depth > 8


def _estimate(net: nn.Module, info: VideoInfo, fn_kwargs: dict[str, Any], chunk: int,
              overlap: int, out_hw: tuple[int, int], held: int | None = None
              ) -> dict[str, float]:
    """Seconds per input frame from a timed optimized forward pass at the run's precision on a
    small crop, scaled by pixel count; peak memory from the frames held at once × (input +
    features + output)."""
    from stvsr.infer.optimize import optimize

    h, w = info.height, info.width
    ch, cw = min(h, 64), min(w, 64)
    t = 3 if net.kind != "window" else int(net.num_frames)
    x = torch.rand(1, max(t, 2), 3, ch, cw)
    dev = fn_kwargs["device"]
    fast = optimize(net, dev, fn_kwargs.get("precision", "fp32"))
    with torch.inference_mode():
        fast(x.to(dev))  # warm-up
        t0 = time.perf_counter()
        fast(x.to(dev))
        dt = time.perf_counter() - t0
    per_frame = dt / (1 if net.kind == "window" else x.shape[1]) * (h * w) / (ch * cw)
    if held is None:  # input frames held at once
        held = int(net.num_frames) if net.kind == "window" else (
            chunk + sum(layout_of(net).context(overlap)))
    feat = int(getattr(net, "mid_channels", getattr(net, "num_feat", 64)) or 64)
    oh, ow = out_hw
    mem = held * (h * w * (3 + 2 * feat) + oh * ow * 3 * 2) * 4
    return {"seconds_per_input_frame": per_frame, "memory_bytes": float(mem)}


def _rotate(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate by the display-matrix angle (degrees counter-clockwise) so the frame is upright."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=k)) if k else rgb


def _assemble_folder(segments: list[Path], output: Path) -> int:
    """Move the PNGs of the segment folders into ``output`` (numbered from 0), atomically."""
    partial = output.with_name(f".{output.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    n = 0
    for seg in segments:
        for f in sorted(seg.glob("*.png")):
            os.replace(f, partial / f"{n:08d}.png")
            n += 1
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(output, old)
    os.replace(partial, output)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    return n


def _bound_malloc() -> Callable[[], None]:
    """On glibc, cap the number of malloc arenas (each encoder / decoder thread would otherwise
    keep its own heap of freed frame buffers, so peak RSS crept up with the number of segments)
    and return a function that gives freed heap memory back to the OS; a no-op elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        return lambda: libc.malloc_trim(0)
    except (OSError, AttributeError):
        return lambda: None


def _disk_error(exc: BaseException, where: Path) -> StvsrError:
    text = str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "No space left" in text:
        return VideoError(
            f"disk full while writing {where}; free space and run the same command again to "
            "resume (finished segments are kept)"
        )
    if isinstance(exc, StvsrError):
        return exc
    return VideoError(f"cannot write {where}: {text}")
