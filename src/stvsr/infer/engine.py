"""``stvsr upscale``: streaming decode → model → encode for real video files.

Frames are decoded one at a time, restored in bounded windows by
:func:`stvsr.infer.runner.restore_stream`, and encoded as they come out; audio and subtitle
streams are copied without re-encoding. Output timestamps come from the input's own per-frame
timestamps (space-time models add the midpoints), never from a rounded frame rate. The output
file appears only when it is complete.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from stvsr.data.video import VideoReader, VideoWriter
from stvsr.errors import StvsrError
from stvsr.infer.defaults import DEFAULT_MODEL
from stvsr.infer.runner import restore_stream

# Default chunking: recurrent models see up to CHUNK frames at once plus OVERLAP context frames
# on each side (BasicVSR at 320×180 needs ~1 GB per 50 frames).
CHUNK, OVERLAP = 30, 5


def frame_to_tensor(rgb) -> torch.Tensor:
    """``(H, W, 3)`` uint8/uint16 array → ``(3, H, W)`` float32 in [0, 1]."""
    t = torch.from_numpy(rgb).permute(2, 0, 1)
    peak = 65535.0 if rgb.dtype.itemsize == 2 else 255.0
    return t.float().div_(peak)


def tensor_to_frame(x: torch.Tensor):
    """``(3, H, W)`` float → ``(H, W, 3)`` uint8 (clamped, rounded)."""
    return x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def upscale_video(
    input: str | Path,
    output: str | Path,
    *,
    model: str | torch.nn.Module = DEFAULT_MODEL,
    weights: str | None = "default",
    device: str = "cpu",
    precision: str = "fp32",
    chunk: int | None = None,
    overlap: int | None = None,
    tile: int | None = None,
    codec: str = "libx264",
    crf: int = 18,
    preset: str = "medium",
    pix_fmt: str | None = None,
    lossless: bool = False,
    start: float | None = None,
    end: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Restore ``input`` (video file or frame folder) into ``output``; returns a summary."""
    from tqdm import tqdm

    from stvsr import create_model

    if isinstance(model, str):
        net = create_model(model, weights=weights, device=device)
    else:
        net = model
    if not getattr(net, "pretrained", True):
        print(f"note: {getattr(net, 'preset', 'model')} has random weights (no checkpoint); "
              "its output shows only that the pipeline runs")
    spacetime = net.kind == "spacetime"
    t0 = time.perf_counter()
    with VideoReader(input, start=start, end=end) as reader:
        info = reader.info
        rate = info.frame_rate or Fraction(25)
        out_rate = rate * 2 if spacetime else rate
        times: deque[Fraction] = deque()

        def frames() -> Iterator[torch.Tensor]:
            for frame in reader:
                times.append(frame.time)
                yield frame_to_tensor(frame.rgb)

        stream = restore_stream(net, frames(), device=device, precision=precision,
                                chunk=chunk or CHUNK,
                                overlap=OVERLAP if overlap is None else overlap, tile=tile)
        total = info.num_frames
        if total is not None and spacetime:
            total = 2 * total - 1
        n_out = 0
        size = (0, 0)
        with VideoWriter(output, fps=out_rate, codec=codec, crf=crf, preset=preset,
                         pix_fmt=pix_fmt, lossless=lossless,
                         audio_from=input if info.has_audio else None,
                         start=start, end=end) as writer:
            bar = tqdm(total=total, unit="frame", desc="upscale", disable=not progress)
            prev: Fraction | None = None
            for j, out in enumerate(stream):
                if spacetime and j % 2 == 1:
                    t = (prev + times[0]) / 2  # midpoint between input j//2 and j//2 + 1
                else:
                    prev = t = times.popleft()
                rgb = tensor_to_frame(out)
                size = (rgb.shape[1], rgb.shape[0])
                writer.write(rgb, time=t)
                n_out += 1
                bar.update(1)
            bar.close()
    if n_out == 0:
        raise StvsrError(f"{input} has no frames in the selected range")
    seconds = time.perf_counter() - t0
    return {
        "input": str(input), "output": str(output), "model": getattr(net, "preset", None),
        "frames_out": n_out, "width": size[0], "height": size[1], "fps": str(out_rate),
        "seconds": seconds, "frames_per_second": n_out / max(seconds, 1e-9),
    }
