"""The output side of ``stvsr upscale``: frames rotated upright for PNG output, a folder of
segment PNGs assembled atomically, and the join of the segment files into the output."""

from __future__ import annotations

import os
import shutil
import uuid
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stvsr.data.video import concat_segments
from stvsr.errors import VideoError
from stvsr.infer.checks import disk_error
from stvsr.infer.progress import Progress
from stvsr.infer.segments import WorkDir

if TYPE_CHECKING:
    from stvsr.infer.job import UpscaleJob
    from stvsr.infer.plan import RunPlan

__all__ = ["assemble_folder", "join_segments", "rotate"]


def rotate(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate by the display-matrix angle (degrees counter-clockwise) so the frame is upright."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=k)) if k else rgb


def assemble_folder(segments: list[Path], output: Path) -> int:
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


def join_segments(job: UpscaleJob, plan: RunPlan, work: WorkDir, progress: str) -> int:
    """Step 5: join the finished segments into the output and return the frames written.

    A folder output gets the segments' PNGs renumbered; a video output gets their packets
    remuxed (no re-encode) with exact timestamps, audio and subtitles copied in sync from the
    input, and the rotation tag carried over. The output appears atomically."""
    seg_files = [work.segment_path(s.index, job.suffix) for s in plan.segments]
    info = job.info
    try:
        if job.mode == "folder":
            return assemble_folder(seg_files, job.output)
        mux = Progress(progress, plan.n_out, stage="mux")
        seg_list = [(f, [t for (_, _, t) in p]) for f, p in zip(seg_files, plan.outputs,
                                                               strict=True)]
        has_side = info.audio_streams > 0 or info.subtitle_streams > 0
        end = job.options.end
        written = concat_segments(
            seg_list, job.output, fps=job.out_rate, time_base=plan.time_base,
            audio_from=job.input if (has_side and not info.is_folder) else None,
            audio_range=(plan.times[0], Fraction(end) if end is not None else None)
            if has_side else None,
            rotation=job.rotation, progress=lambda n: mux.update(n - mux.done),
        )
        mux.close()
        return written
    except (OSError, VideoError) as exc:
        raise disk_error(exc, job.output) from None
