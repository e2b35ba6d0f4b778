"""Evaluation protocols as data: which LR frames go in, which output is scored against which HR
frame, and as what kind.

A protocol turns a clip of ``n`` HR frames into a list of :class:`Run`: each run is one LR
stream fed to :func:`stvsr.infer.runner.restore_stream` (``inputs``: the HR frames whose
degraded versions form it, in order) and the :class:`Target` outputs of that stream that are
scored (output index, HR frame, kind). Every HR frame is the target of exactly one run; the
runner (:mod:`stvsr.eval.runner`) checks it.

Protocols (*facts* where papers state them, see ``docs/evaluation.md``; the tail rules are
*design*):

``svsr`` (S-VSR, ×s in space)
    One run over all ``n`` frames; output ``t`` restores frame ``t`` (kind ``input``).
``windowed`` (ST-VSR, what papers report)
    Windows of ``window`` (7) HR frames, starts ``0, stride, 2·stride, …`` (stride 6: one frame
    shared) while the window fits, plus a tail window ending at frame ``n - 1`` when the last
    one stops short. A window's even positions are its LR input; its ``window`` outputs are its
    HR frames. **Each HR frame is scored once, by the earliest window that contains it**; its
    kind is ``input`` at an even window position, else ``new``. A clip shorter than ``window``
    is scored with the full protocol.
``full`` (ST-VSR, what a store-and-fetch model is made for)
    One run over frames ``0, 2, …, E`` (``E`` the last even index); output ``t`` is frame ``t``.
    If ``n`` is even, frame ``n - 1`` comes from an extra 2-frame run of frames ``n - 3, n - 1``
    (its output 2, an input frame); nothing else of that run is scored.
Vimeo septuplets (:data:`SEPTUPLET`)
    Inputs ``im1, im3, im5, im7``; all 7 HR frames scored: one window of 7, which is also the
    full protocol of 7 frames.
The compressed-VSR protocol is the S-VSR one at three H.264 CRFs (:mod:`stvsr.eval.compressed`).
"""

from __future__ import annotations

from dataclasses import dataclass

from stvsr.errors import DataError, StvsrError
from stvsr.infer.layout import StreamLayout

__all__ = [
    "KINDS",
    "SEPTUPLET",
    "ST_PROTOCOLS",
    "Run",
    "Target",
    "full_plan",
    "full_runs",
    "spacetime_runs",
    "svsr_runs",
    "windowed_plan",
    "windowed_runs",
]

KINDS = ("input", "new")  # a scored frame restores an LR input, or is made between two
ST_PROTOCOLS = ("windowed", "full")
_SPACETIME = StreamLayout("spacetime")  # output 2i restores input i, output 2i + 1 is new


@dataclass(frozen=True)
class Target:
    """Output ``output`` of a run is scored against HR frame ``frame`` as ``kind``."""

    output: int
    frame: int
    kind: str


@dataclass(frozen=True)
class Run:
    """One LR stream: the HR frames whose LR versions go in (in order) and its scored outputs."""

    inputs: tuple[int, ...]
    targets: tuple[Target, ...]


def svsr_runs(n_frames: int) -> list[Run]:
    """The S-VSR protocol: every frame in, output ``t`` scored against frame ``t``."""
    frames = tuple(range(n_frames))
    return [Run(frames, tuple(Target(t, t, "input") for t in frames))]


def _st_kind(output: int) -> str:
    """The kind of a space-time stream's output (even: restores an input; odd: new)."""
    return "input" if _SPACETIME.source(output)[0] == "frame" else "new"


def windowed_plan(n_frames: int, window: int = 7, stride: int = 6
                  ) -> list[tuple[int, list[int]]]:
    """``[(start, scored)]``: window starts and the window positions each one scores.

    Window ``[start, start + window)`` takes its even positions as LR input; ``scored`` lists
    the positions ``j`` whose frame ``start + j`` this window scores (earliest window wins).
    """
    if window < 3 or window % 2 == 0:
        raise StvsrError(f"window must be an odd number of HR frames >= 3, got {window}")
    if not 1 <= stride <= window:
        raise StvsrError(f"stride must be in 1..{window} so every frame is covered, got {stride}")
    if n_frames < window:
        raise StvsrError(f"a clip of {n_frames} frames is shorter than the window {window}")
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    done: set[int] = set()
    plan = []
    for a in starts:
        scored = [j for j in range(window) if a + j not in done]
        done.update(a + j for j in scored)
        plan.append((a, scored))
    return plan


def full_plan(n_frames: int) -> tuple[list[int], int | None]:
    """LR frame indices of the full protocol and the extra tail frame (``None`` if ``n`` odd)."""
    if n_frames < 3:
        raise DataError(f"a clip needs at least 3 frames for ST-VSR evaluation, got {n_frames}")
    last_even = n_frames - 1 if n_frames % 2 else n_frames - 2
    return list(range(0, last_even + 1, 2)), (None if n_frames % 2 else n_frames - 1)


def windowed_runs(n_frames: int, window: int = 7, stride: int = 6) -> list[Run]:
    """The windowed protocol as runs: output ``j`` of the window at ``a`` is frame ``a + j``."""
    return [Run(tuple(range(a, a + window, 2)),
                tuple(Target(j, a + j, _st_kind(j)) for j in scored))
            for a, scored in windowed_plan(n_frames, window, stride)]


def full_runs(n_frames: int) -> list[Run]:
    """The full protocol as runs: output ``t`` of the stream of frames ``0, 2, …, E`` is frame
    ``t``; an even ``n`` adds the 2-frame tail run scoring frame ``n - 1``."""
    idx, tail = full_plan(n_frames)
    runs = [Run(tuple(idx), tuple(Target(t, t, _st_kind(t)) for t in range(2 * len(idx) - 1)))]
    if tail is not None:
        runs.append(Run((tail - 2, tail), (Target(_SPACETIME.output_of(1), tail, "input"),)))
    return runs


SEPTUPLET: tuple[Run, ...] = tuple(full_runs(7))  # Vimeo: im1, im3, im5, im7 in; all 7 scored


def spacetime_runs(protocol: str, n_frames: int, *, window: int = 7, stride: int = 6,
                   vimeo: bool = False) -> list[Run]:
    """The runs of ST-VSR ``protocol`` on a clip of ``n_frames`` (``vimeo``: a septuplet)."""
    if protocol not in ST_PROTOCOLS:
        raise StvsrError(f"unknown protocol {protocol!r}; choose one of {', '.join(ST_PROTOCOLS)}")
    if vimeo and n_frames == 7:
        return list(SEPTUPLET)
    if protocol == "windowed" and n_frames >= window:
        return windowed_runs(n_frames, window, stride)
    return full_runs(n_frames)
