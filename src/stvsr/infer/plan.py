"""Steps 2 and 3 of ``stvsr upscale``: scan the input, then plan the segments and their output
frames.

The scan reads the input once (no model): exact per-frame times and the luma distance between
consecutive frames, stored in the work folder's manifest so that a resumed run does not repeat
it. The plan follows from the scan deterministically (every rank of a distributed run makes the
same one): scene cuts, segments that never span a cut (:mod:`stvsr.infer.segments`), the output
frames of each segment (:func:`~stvsr.infer.segments.output_plan`, or
:func:`~stvsr.infer.retime.retime_plan` when retiming) and a time base in which every output
time is exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from stvsr.errors import VideoError
from stvsr.infer.job import UpscaleJob
from stvsr.infer.progress import Progress
from stvsr.infer.retime import retime_plan
from stvsr.infer.scenes import detect_cuts, frame_distance, luma_thumbnail
from stvsr.infer.segments import Segment, WorkDir, output_plan, plan_segments

__all__ = ["RunPlan", "announce", "plan_run", "scan_input", "time_base"]

#: One output frame of a segment: ``(what, input index, time)`` (see :func:`output_plan`).
OutputFrame = tuple[str, int, Fraction]


@dataclass(frozen=True)
class RunPlan:
    """The segments of a run and the output frames each one owns."""

    times: list[Fraction]  # input frame times, from the scan
    cuts: list[int]  # first input frames of new shots
    segments: list[Segment]
    outputs: list[list[OutputFrame]]  # by segment index
    time_base: Fraction | None  # of a video output (None: a folder, or no exact one)

    @property
    def n_in(self) -> int:
        return len(self.times)

    @property
    def n_out(self) -> int:
        return sum(len(p) for p in self.outputs)

    @property
    def relative_times(self) -> list[Fraction]:
        """Input times from 0 (the output starts at 0, also after ``--start``)."""
        return [t - self.times[0] for t in self.times]

    def done_frames(self, work: WorkDir, suffix: str) -> int:
        """Output frames of the segments already finished in ``work``."""
        return sum(len(p) for s, p in zip(self.segments, self.outputs, strict=True)
                   if work.is_done(s.index, suffix))


def scan_input(job: UpscaleJob, work: WorkDir, progress: str
               ) -> tuple[list[Fraction], list[float]]:
    """Step 2: the input's frame times and scene distances (from the manifest when an earlier
    run saved them; else read once, without the model, and saved there)."""
    scan = work.load_scan()
    if scan is not None:
        return scan
    times: list[Fraction] = []
    dists: list[float] = []
    prev = None
    bar = Progress(progress if progress == "bar" else "none", job.info.num_frames or 0,
                   stage="scan")
    with job.open_reader() as reader:
        for frame in reader:
            thumb = luma_thumbnail(frame.rgb)
            dists.append(0.0 if prev is None else frame_distance(prev, thumb))
            prev = thumb
            times.append(frame.time)
            bar.update(1)
    bar.close()
    if not times:
        work.remove()
        raise VideoError(f"{job.input} has no frames in the selected range")
    work.save_scan(times, dists)
    return times, dists


def plan_run(job: UpscaleJob, times: list[Fraction], distances: list[float]) -> RunPlan:
    """Step 3: scene cuts, segments and the output frames of each, from the scan."""
    o = job.options
    cuts = detect_cuts(distances, threshold=o.scene_threshold) if o.scene_detect else []
    assert o.segment_frames is not None  # resolved by resolve_job
    segments = plan_segments(len(times), cuts, o.segment_frames)
    rel = [t - times[0] for t in times]
    if job.retime:
        outputs = [retime_plan(s, rel, job.out_rate) for s in segments]
    else:
        outputs = [output_plan(s, rel, interpolate=job.interpolate) for s in segments]
    out_times = [t for p in outputs for (_, _, t) in p]
    tb = time_base(out_times, job.out_rate) if job.mode == "video" else None
    return RunPlan(times, cuts, segments, outputs, tb)


def announce(plan: RunPlan, done: int, resumed: bool, work: WorkDir,
             say: Callable[[str], None]) -> None:
    """Say what a resumed run has already done, and where the scene cuts are."""
    if resumed and done:
        say(f"resuming: {done} of {plan.n_out} output frames already done in {work.path}")
    if plan.cuts:
        cuts = plan.cuts
        say(f"scene cuts at input frames {cuts[:10]}{' ...' if len(cuts) > 10 else ''}")


def time_base(times: list[Fraction], rate: Fraction) -> Fraction | None:
    """``1 / L`` with every time a multiple (exact timestamps), or ``None`` if L is too large."""
    lcm = math.lcm(90000, rate.numerator)
    for t in times:
        lcm = math.lcm(lcm, t.denominator)
        if lcm > 2**30:
            return None
    return Fraction(1, lcm)
